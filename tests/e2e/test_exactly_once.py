"""Exactly once, under concurrency, across two real ``coffer server`` processes.

Two servers share one database (SQLite: both open the same file; PostgreSQL: the same schema),
the second started as a second node is: its own directory, the first one's root key through
``COFFER_ROOT_KEY``. Read-limited vault secrets, ephemeral secrets and shares are then read by
32 client threads, each secret several times more often than its limit, the attempts on one
secret sent back to back (so they overlap) and alternating between the two servers. Whatever
the interleaving, each secret must give exactly ``max_reads`` successes with the right value
and the read counts 1..max_reads, every other attempt a 404 (burned) or a 410 (sealed), and
the audit log exactly ``max_reads`` ``secret.read`` entries and one ``secret.burned`` (or
``secret.sealed``) per secret; afterwards the log still verifies.

Reads that count several limited secrets in one transaction (an export, a read that expands
``${...}`` references) must also run side by side without failing, and count what they read.
"""

from __future__ import annotations

import base64
import json
import random
import threading
from collections import Counter, defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from coffer.crypto.share_cipher import decode_share_key, open_share, seal_share, share_proof
from tests.e2e.harness import BACKENDS, Database, ServerProcess, start_server

CLIENT_THREADS = 32
VAULT_SECRETS = 40  # max_reads=3
EPHEMERAL_SECRETS = 40  # max_reads=2
SHARES = 12  # max_reads=1
SEALED_EVERY = 10  # every 10th of each kind is created with delete=false (sealed, not burned)
ATTEMPTS_PER_READ = 4  # attempts per secret = ATTEMPTS_PER_READ * max_reads ...
SHARE_ATTEMPTS = 8  # ... except shares (max_reads=1), tried 8 times each
PROJECT = "exactly-once"
ENVIRONMENT = "development"
REQUEST_TIMEOUT_S = 30.0
# Rate limits off: the burst of ~900 requests from one address is the point, not a 429.
NO_RATE_LIMITS = {
    "COFFER_RATE_LIMIT_IP": "off",
    "COFFER_RATE_LIMIT_IDENTITY": "off",
    "COFFER_PRUNE_INTERVAL": "0",
}


@dataclass(frozen=True)
class Target:
    """One limited secret and how to read it."""

    kind: str  # "vault", "ephemeral" or "share"
    audit_key: str  # the audit entries' key: the secret's key, or the share's id
    value: str
    max_reads: int
    burn: bool
    method: str
    path: str
    body: dict[str, str] | None = None
    share_key: str | None = None  # the link fragment of a share

    @property
    def refusal(self) -> int:
        """The status of every attempt past the limit: 404 once burned, 410 once sealed."""
        return 404 if self.burn else 410

    @property
    def last_event(self) -> str:
        return "secret.burned" if self.burn else "secret.sealed"


@dataclass(frozen=True)
class Outcome:
    """One attempt's answer."""

    target: Target
    server: int
    status: int
    body: dict[str, Any] | str


@pytest.fixture
def two_servers(fresh_database: Database, tmp_path: Path) -> Iterator[list[ServerProcess]]:
    """Two servers on one database: the first initialises the vault, the second joins it
    from its own directory with the first one's root key."""
    home = tmp_path / "home"
    home.mkdir()
    first_dir = tmp_path / "node1"
    url = fresh_database.url_for(first_dir)
    first = start_server(first_dir, url, tmp_path / "node1.log", home, extra_env=NO_RATE_LIMITS)
    servers = [first]
    try:
        assert first.token, first.log_text()
        root_key = (first_dir / "root.key").read_text(encoding="ascii").strip()
        second = start_server(
            tmp_path / "node2",
            url,
            tmp_path / "node2.log",
            home,
            extra_env={**NO_RATE_LIMITS, "COFFER_ROOT_KEY": root_key},
        )
        servers.append(second)
        assert second.token is None, "the second node initialised a vault of its own"
        second.token = first.token
        yield servers
    finally:
        for server in servers:
            server.stop()


def _create_targets(server: ServerProcess) -> list[Target]:
    """Creates the limited secrets through the first server and returns them."""
    assert server.token is not None
    auth = {"Authorization": f"Bearer {server.token}"}
    targets: list[Target] = []
    secrets_path = f"/api/v1/projects/{PROJECT}/environments/{ENVIRONMENT}/secrets"
    with httpx.Client(base_url=server.addr, headers=auth, timeout=REQUEST_TIMEOUT_S) as client:
        assert client.post("/api/v1/projects", json={"name": PROJECT}).status_code == 201
        for n in range(VAULT_SECRETS):
            burn = n % SEALED_EVERY != 0
            key, value = f"limited/v{n:02d}", f"vault-value-{n:02d}-{'x' * n}"
            created = client.put(
                f"{secrets_path}/{key}", json={"value": value, "max_reads": 3, "delete": burn}
            )
            assert created.status_code == 200, created.text
            targets.append(Target("vault", key, value, 3, burn, "GET", f"{secrets_path}/{key}"))
        for n in range(EPHEMERAL_SECRETS):
            burn = n % SEALED_EVERY != 0
            key, value = f"once/e{n:02d}", f"ephemeral-value-{n:02d}"
            created = client.post(
                "/api/v1/ephemeral",
                json={"key": key, "value": value, "max_reads": 2, "delete": burn},
            )
            assert created.status_code == 201, created.text
            targets.append(
                Target("ephemeral", key, value, 2, burn, "GET", f"/api/v1/ephemeral/{key}")
            )
        for n in range(SHARES):
            burn = n % (SHARES // 2) != 0
            value = f"share-value-{n:02d}"
            key_text, envelope = seal_share(value.encode())
            proof = share_proof(decode_share_key(key_text))
            created = client.post(
                "/api/v1/shares",
                json={
                    "ciphertext": base64.b64encode(envelope).decode("ascii"),
                    "proof": proof,
                    "max_reads": 1,
                    "delete": burn,
                },
            )
            assert created.status_code == 201, created.text
            share = created.json()
            targets.append(
                Target(
                    "share",
                    share["id"],
                    value,
                    1,
                    burn,
                    "POST",
                    f"/api/v1/shares/{share['token']}/reveal",
                    body={"proof": proof},
                    share_key=key_text,
                )
            )
    return targets


def _schedule(targets: list[Target]) -> list[tuple[Target, int]]:
    """Every target's attempts, back to back so they overlap, alternating between the two
    servers; the targets in a shuffled (seeded) order."""
    order = list(targets)
    random.Random(5).shuffle(order)
    attempts: list[tuple[Target, int]] = []
    for target in order:
        count = SHARE_ATTEMPTS if target.kind == "share" else ATTEMPTS_PER_READ * target.max_reads
        attempts += [(target, (len(attempts) + i) % 2) for i in range(count)]
    return attempts


def _hammer(servers: list[ServerProcess], attempts: list[tuple[Target, int]]) -> list[Outcome]:
    """Sends the attempts from CLIENT_THREADS threads, each with a keep-alive client per
    server, all starting together; returns every answer."""
    token = servers[0].token
    local = threading.local()
    clients: list[httpx.Client] = []
    lock = threading.Lock()
    start = threading.Barrier(CLIENT_THREADS, timeout=REQUEST_TIMEOUT_S)

    def client_for(index: int) -> httpx.Client:
        mine: list[httpx.Client] | None = getattr(local, "clients", None)
        if mine is None:
            mine = [httpx.Client(base_url=s.addr, timeout=REQUEST_TIMEOUT_S) for s in servers]
            local.clients = mine
            with lock:
                clients.extend(mine)
            start.wait()
        return mine[index]

    def attempt(job: tuple[Target, int]) -> Outcome:
        target, index = job
        headers = {} if target.kind == "share" else {"Authorization": f"Bearer {token}"}
        response = client_for(index).request(
            target.method, target.path, json=target.body, headers=headers
        )
        try:
            body: dict[str, Any] | str = response.json()
        except ValueError:
            body = response.text
        return Outcome(target, index, response.status_code, body)

    try:
        with ThreadPoolExecutor(max_workers=CLIENT_THREADS) as pool:
            return list(pool.map(attempt, attempts))
    finally:
        for client in clients:
            client.close()


def _read_value_and_count(outcome: Outcome) -> tuple[str, int]:
    """The value a successful attempt returned, and the read count it reported."""
    body = outcome.body
    assert isinstance(body, dict), body
    target = outcome.target
    if target.kind == "vault":
        return body["value"], body["limits"]["read_count"]
    if target.kind == "ephemeral":
        return body["value"], body["read_count"]
    assert target.share_key is not None
    plain = open_share(target.share_key, base64.b64decode(body["ciphertext"]))
    return plain.decode(), body["limits"]["read_count"]


def _audit(server: ServerProcess, action: str) -> Counter[str]:
    """How many entries of ``action`` each key has, over every page of the log."""
    counts: Counter[str] = Counter()
    params = {"action": action, "limit": "1000"}
    with httpx.Client(
        base_url=server.addr,
        headers={"Authorization": f"Bearer {server.token}"},
        timeout=REQUEST_TIMEOUT_S,
    ) as client:
        while True:
            page = client.get("/api/v1/audit", params=params)
            assert page.status_code == 200, page.text
            counts.update(entry["key"] for entry in page.json()["entries"])
            cursor = page.json()["next"]
            if cursor is None:
                return counts
            params["cursor"] = cursor


def test_every_limited_secret_is_read_exactly_max_reads_times_across_two_servers(
    two_servers: list[ServerProcess],
) -> None:
    targets = _create_targets(two_servers[0])
    attempts = _schedule(targets)
    outcomes = _hammer(two_servers, attempts)

    successes: dict[str, list[int]] = defaultdict(list)
    statuses: dict[str, Counter[int]] = defaultdict(Counter)
    wrong: list[str] = []
    for outcome in outcomes:
        target = outcome.target
        statuses[target.audit_key][outcome.status] += 1
        if outcome.status == 200:
            value, count = _read_value_and_count(outcome)
            successes[target.audit_key].append(count)
            if value != target.value:
                wrong.append(f"{target.kind} {target.audit_key}: wrong value {value!r}")
        elif outcome.status != target.refusal:
            wrong.append(
                f"{target.kind} {target.audit_key} on server {outcome.server}: "
                f"{outcome.status} {outcome.body!r}"
            )
    assert wrong == []
    tried = Counter(target.audit_key for target, _ in attempts)
    assert {t.audit_key: dict(statuses[t.audit_key]) for t in targets} == {
        t.audit_key: {200: t.max_reads, t.refusal: tried[t.audit_key] - t.max_reads}
        for t in targets
    }
    assert {t.audit_key: sorted(successes[t.audit_key]) for t in targets} == {
        t.audit_key: list(range(1, t.max_reads + 1)) for t in targets
    }
    expected_reads = VAULT_SECRETS * 3 + EPHEMERAL_SECRETS * 2 + SHARES
    assert sum(len(counts) for counts in successes.values()) == expected_reads
    # both servers answered both ways: the contention really spanned the two processes
    assert {(o.server, o.status == 200) for o in outcomes} == {
        (0, True),
        (0, False),
        (1, True),
        (1, False),
    }

    reads = _audit(two_servers[1], "secret.read")
    burned = _audit(two_servers[1], "secret.burned")
    sealed = _audit(two_servers[0], "secret.sealed")
    assert {t.audit_key: reads[t.audit_key] for t in targets} == {
        t.audit_key: t.max_reads for t in targets
    }
    assert sum(reads.values()) == expected_reads
    assert dict(burned) == {t.audit_key: 1 for t in targets if t.burn}
    assert dict(sealed) == {t.audit_key: 1 for t in targets if not t.burn}

    # afterwards: burned ones are gone, sealed ones are kept and say why they refuse
    auth = {"Authorization": f"Bearer {two_servers[0].token}"}
    with httpx.Client(base_url=two_servers[1].addr, timeout=REQUEST_TIMEOUT_S) as client:
        for target in targets:
            if target.kind == "share":
                head = client.head(target.path.removesuffix("/reveal"))
            else:
                head = client.head(target.path, headers=auth)
            assert (target.audit_key, head.status_code) == (target.audit_key, target.refusal)
            if not target.burn:
                assert head.headers["X-Coffer-Read-Count"] == str(target.max_reads)
                assert head.headers["X-Coffer-Status"] == "sealed"
        verified = client.post("/api/v1/audit/verify", headers=auth)
    assert verified.status_code == 200, verified.text
    assert verified.json()["ok"] is True, verified.json()


REFERENCE_THREADS = 16
REFERENCE_ROUNDS = 2  # per thread: GET b?expand=true and an export, alternately


@pytest.mark.parametrize(
    "fresh_database",
    BACKENDS,
    indirect=True,
)
def test_expanding_reads_and_exports_of_limited_secrets_run_side_by_side(
    two_servers: list[ServerProcess],
) -> None:
    """``b`` holds ``${a}``; both are read-limited. Reads of ``b`` with references expanded
    and exports of the environment, at once on both servers, all succeed, and each counts
    exactly the reads it made: a GET of ``b`` counts ``b`` and ``a``, an export counts ``a``,
    ``b`` and ``a`` again for the reference in ``b``."""
    token = two_servers[0].token
    auth = {"Authorization": f"Bearer {token}"}
    env_path = f"/api/v1/projects/{PROJECT}/environments/{ENVIRONMENT}"
    with httpx.Client(
        base_url=two_servers[0].addr, headers=auth, timeout=REQUEST_TIMEOUT_S
    ) as client:
        assert client.post("/api/v1/projects", json={"name": PROJECT}).status_code == 201
        for key, value in (("a", "value-a"), ("b", "b-${a}")):
            written = client.put(
                f"{env_path}/secrets/{key}", json={"value": value, "max_reads": 10_000}
            )
            assert written.status_code == 200, written.text

    def one_client(number: int) -> list[tuple[str, int, str]]:
        answers = []
        with httpx.Client(headers=auth, timeout=REQUEST_TIMEOUT_S) as client:
            for round_no in range(REFERENCE_ROUNDS):
                server = two_servers[(number + round_no) % 2]
                if (number + round_no) % 2:
                    what, url = "get", f"{server.addr}{env_path}/secrets/b?expand=true"
                else:
                    what, url = "export", f"{server.addr}{env_path}/export?format=json"
                try:
                    response = client.get(url)
                except httpx.TransportError as exc:
                    answers.append((what, 0, type(exc).__name__))
                    continue
                answers.append((what, response.status_code, response.text))
        return answers

    with ThreadPoolExecutor(max_workers=REFERENCE_THREADS) as pool:
        answers = [a for batch in pool.map(one_client, range(REFERENCE_THREADS)) for a in batch]

    gets = REFERENCE_THREADS * REFERENCE_ROUNDS // 2
    exports = REFERENCE_THREADS * REFERENCE_ROUNDS - gets
    assert Counter((what, status) for what, status, _ in answers) == {
        ("get", 200): gets,
        ("export", 200): exports,
    }
    for what, _, text in answers:
        if what == "get":
            assert json.loads(text)["value"] == "b-value-a"
        else:
            assert json.loads(text) == {"a": "value-a", "b": "b-value-a"}
    with httpx.Client(base_url=two_servers[1].addr, headers=auth) as client:
        counts = {
            key: client.head(f"{env_path}/secrets/{key}").headers["X-Coffer-Read-Count"]
            for key in ("a", "b")
        }
    assert counts == {"a": str(gets + 2 * exports), "b": str(gets + exports)}

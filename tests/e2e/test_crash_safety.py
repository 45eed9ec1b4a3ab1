"""Crash safety of key management: SIGKILL at random moments, then every secret must read back.

Real processes on a real vault (SQLite, and PostgreSQL when configured):

* **rotate-key.** A client drives alpha's data-key rotation through the API in steps of 5
  (what ``coffer rotate-key --batch 5`` sends, without a CLI start-up per round) while
  another keeps writing new versions; the server is killed with SIGKILL after a random number
  of steps plus a random fraction of a step, and a new server is started on the vault at
  once. Checks go to a server started after an earlier kill, which ran through this one as
  a second node would, so every server both opens a vault just after a crash and serves
  through one: each known version of every secret (current ones through an export, older
  ones one by one) reads back exactly, and a write cut off by the kill is either wholly
  there or wholly absent. Finally ``coffer rotate-key`` completes the rotation: one data key
  left, ``key.rotated`` recorded exactly once for every key version the project went
  through, and the audit log verifies.
* **rotate-root.** ``coffer rotate-root --batch 2`` (local, on the vault) is killed with
  SIGKILL, mostly while it re-seals (after it recorded the pending generation), sometimes at
  any moment from its start, while a server keeps creating ephemeral secrets and projects
  (sealed under the root key). After every kill a server that ran through it serves every
  secret and ephemeral secret right (every third round one started after a kill), and the
  next run opens the vault. Finally a complete run leaves the next generation active, no
  ``root.key.next``, ``key.root_rotated`` once per generation, and everything readable.
* **backup restore.** ``coffer backup restore`` into a new vault is killed at random moments;
  afterwards the target holds no vault (and the restore, run again over what was left,
  succeeds) or the whole vault, never part of one.

Kills land at wall-clock moments, so a run cannot be replayed exactly; the seed fixes the
values, the kill points and the choices. Every failure names the seed and each round's
history; ``COFFER_CRASH_SEED=N`` runs with seed N. Some crash windows are microseconds wide,
too narrow for a random kill to find: the tests at the end recreate the state such a kill
leaves.
"""

from __future__ import annotations

import collections
import functools
import itertools
import json
import os
import random
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from coffer.crypto.keys import generation_prefix
from tests.e2e.harness import (
    BACKENDS,
    Database,
    ServerExited,
    ServerProcess,
    base_env,
    close_database,
    open_database,
    spawn_server,
    start_server,
    wait_until_ready,
)

ENVIRONMENTS = ("development", "staging", "production")
ROTATED = "alpha"  # the project whose data key is rotated
BYSTANDER = "beta"  # another project, which no rotation of alpha may touch
# (project, keys per environment, every n-th key has extra versions, how many versions then)
KEY_LAYOUT = ((ROTATED, 30, 4, 4), (BYSTANDER, 10, 5, 3))
ROOT_LAYOUT = tuple((f"p{n}", 3, 3, 2) for n in range(5))
EPHEMERAL_SECRETS = 60  # sealed under the root key's KEK, like the data keys
KEY_BATCH = 5
ROOT_BATCH = 2
# Kill rounds per backend (PostgreSQL fewer: the same code paths, the database's own crash
# recovery); COFFER_CRASH_ROUNDS=N runs N rounds of each instead, for a longer soak.
KEY_ROUNDS = {"sqlite": 8, "postgresql": 3}
ROOT_ROUNDS = {"sqlite": 5, "postgresql": 2}
RESTORE_ROUNDS = {"sqlite": 5, "postgresql": 2}
EXTRA_ROUNDS = 4  # at most, while no kill landed mid-way
KEY_WRITE_PAUSE_S = 0.02  # between the writes made during a rotation (each adds reads)
ROOT_WRITE_PAUSE_S = 0.1
STEP_JITTER_S = 0.01  # the kill comes this long at most after the step it waits for
REQUEST_TIMEOUT_S = 30.0
PROCESS_TIMEOUT_S = 60.0
READERS = 4
QUIET = {
    "COFFER_RATE_LIMIT_IP": "off",
    "COFFER_RATE_LIMIT_IDENTITY": "off",
    "COFFER_PRUNE_INTERVAL": "0",
}

SecretId = tuple[str, str, str]  # project, environment, key


# --- seed and history -------------------------------------------------------------------------


@dataclass
class Chaos:
    """The seeded random source of one test and what happened so far, for failure messages."""

    seed: int
    rng: random.Random
    history: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def note(self, line: str) -> None:
        line = f"{time.monotonic() - self.started:6.1f} s {line}"
        self.history.append(line)
        print(line)

    def why(self, problem: object) -> str:
        """A failure message: the problem, the seed and everything that happened."""
        lines = "\n  ".join(self.history[-40:])
        return f"{problem}\nseed {self.seed} (COFFER_CRASH_SEED={self.seed})\n  {lines}"


def rounds(table: dict[str, int], backend: str) -> int:
    """How many kill rounds to run: COFFER_CRASH_ROUNDS when set, else the table's."""
    return int(os.environ.get("COFFER_CRASH_ROUNDS") or table[backend])


def extra_rounds(planned: int, landed: Callable[[], bool]) -> Iterator[int]:
    """Round numbers: the planned ones, then up to EXTRA_ROUNDS more while no kill has yet
    landed where it must (a kill's moment is random: this keeps the test from passing, or
    failing, on a run whose kills all missed)."""
    for round_no in itertools.count():
        if round_no >= planned and (landed() or round_no >= planned + EXTRA_ROUNDS):
            return
        yield round_no


@pytest.fixture
def chaos(request: pytest.FixtureRequest) -> Chaos:
    """A seeded random source: COFFER_CRASH_SEED, else a fresh seed (printed)."""
    seed = int(os.environ.get("COFFER_CRASH_SEED") or secrets.randbelow(2**31))
    print(f"crash-safety seed {seed}: COFFER_CRASH_SEED={seed} repeats these choices")
    return Chaos(seed, random.Random(f"{seed}/{request.node.name}"))


# --- the vault and what it must hold ----------------------------------------------------------


@dataclass
class Vault:
    """A vault under test: where it lives, its token and every value written to it."""

    directory: Path
    url: str
    home: Path
    token: str
    known: dict[SecretId, list[str]] = field(default_factory=dict)
    ephemeral: dict[str, str] = field(default_factory=dict)
    spawned: list[ServerProcess] = field(default_factory=list)
    engine: sa.Engine | None = None

    def spawn(self) -> ServerProcess:
        """Starts a server on the vault (its own log file) without waiting for it."""
        log = self.directory.parent / f"server-{len(self.spawned) + 1}.log"
        server = spawn_server(self.directory, self.url, log, self.home, extra_env=QUIET)
        server.token = self.token
        self.spawned.append(server)
        return server

    def cli_env(self, server: ServerProcess | None = None) -> dict[str, str]:
        """The CLI's environment: the vault's database and, with ``server``, its address."""
        extra: dict[str, str | None] = {"COFFER_DATABASE_URL": self.url, **QUIET}
        if server is not None:
            extra.update(COFFER_ADDR=server.addr, COFFER_TOKEN=self.token)
        return base_env(self.home, extra)

    def query(self, sql: str, **params: object) -> list[tuple[Any, ...]]:
        """Rows of ``sql`` on the vault's database (read by the test itself)."""
        if self.engine is None:
            self.engine = sa.create_engine(self.url)
        with self.engine.connect() as conn:
            return [tuple(row) for row in conn.execute(sa.text(sql), params)]

    def close(self) -> None:
        if self.engine is not None:
            self.engine.dispose()


def ready(vault: Vault, server: ServerProcess) -> ServerProcess:
    """Waits for a spawned server; starts another when its port was taken meanwhile. Fails
    the test, with the server's log, when it cannot open the vault."""
    try:
        wait_until_ready(server)  # it reads the token from the log: a first start's only
    except ServerExited as exc:
        if "address already in use" in exc.log.lower():
            return ready(vault, vault.spawn())
        pytest.fail(f"a server started after the kill did not open the vault:\n{exc.log}")
    server.token = vault.token
    return server


def new_vault(database: Database, tmp_path: Path) -> tuple[Vault, ServerProcess]:
    """Initialises a vault by starting a server on an empty directory; returns both."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    directory = tmp_path / "vault"
    url = database.url_for(directory)
    server = start_server(directory, url, tmp_path / "server-0.log", home, extra_env=QUIET)
    assert server.token, server.log_text()
    return Vault(directory, url, home, server.token), server


class Relay:
    """The servers of one vault, passed on at every kill. ``current`` serves the round;
    ``ahead`` more are booting or ready. After a kill ``pass_on`` starts a new server at once
    (it opens the vault just after the crash, and boots during the next rounds) and hands
    over to the oldest waiting one, started after an earlier kill, which ran through this
    one as a second node would."""

    def __init__(self, vault: Vault, first: ServerProcess, ahead: int = 1) -> None:
        self.vault = vault
        self.current = first
        self.waiting = collections.deque(vault.spawn() for _ in range(ahead))

    def pass_on(self) -> ServerProcess:
        """Starts the next server, stops ``current`` (if it still runs) and returns the
        server that takes over, once it answers."""
        spawned = self.vault.spawn()
        self.current.stop()
        self.current = ready(self.vault, self.waiting.popleft())
        self.waiting.append(spawned)
        return self.current

    def successor(self) -> ServerProcess:
        """The oldest waiting server (started after an earlier kill), once it answers."""
        self.waiting[0] = ready(self.vault, self.waiting[0])
        return self.waiting[0]

    def stop(self) -> None:
        """Stops every server of the vault."""
        self.current.stop()
        for server in self.vault.spawned:
            server.stop()
        self.vault.close()


def client_for(server: ServerProcess) -> httpx.Client:
    return httpx.Client(
        base_url=server.addr,
        headers={"Authorization": f"Bearer {server.token}"},
        timeout=REQUEST_TIMEOUT_S,
    )


def secret_path(project: str, environment: str, key: str) -> str:
    return f"/api/v1/projects/{project}/environments/{environment}/secrets/{key}"


def make_value(rng: random.Random, where: str) -> str:
    """A value to recognise: where it was written, random text, sometimes several lines or
    non-ASCII."""
    body = "".join(rng.choices("abcdefghijklmnopqrstuvwxyz0123456789-_", k=rng.randint(4, 60)))
    extra = rng.choice(("", "", "\nline two\tand a tab", " é ✓ ü", "=" * rng.randint(1, 200)))
    return f"{where}:{body}{extra}"


def in_parallel(work: Callable[[list[Any]], Any], items: list[Any]) -> list[Any]:
    """Runs ``work`` on READERS interleaved slices of ``items`` at once; returns the results."""
    with ThreadPoolExecutor(READERS) as pool:
        return list(pool.map(work, [items[i::READERS] for i in range(READERS)]))


def seed_secrets(
    server: ServerProcess,
    vault: Vault,
    rng: random.Random,
    layout: tuple[tuple[str, int, int, int], ...],
) -> None:
    """Creates the projects and writes every key's versions (each key's in order)."""
    plan: dict[SecretId, list[str]] = {}
    with client_for(server) as client:
        for project, per_env, every, versions in layout:
            created = client.post("/api/v1/projects", json={"name": project})
            assert created.status_code == 201, created.text
            for environment in ENVIRONMENTS:
                for n in range(per_env):
                    key = f"app/key_{n:02d}" if n % 3 else f"KEY_{n:02d}"
                    count = versions if n % every == 0 else 1
                    plan[(project, environment, key)] = [
                        make_value(rng, f"{project}/{environment}/{key}/v{v}")
                        for v in range(1, count + 1)
                    ]

    def write(items: list[tuple[SecretId, list[str]]]) -> None:
        with client_for(server) as client:
            for secret, values in items:
                for value in values:
                    answer = client.put(secret_path(*secret), json={"value": value})
                    assert answer.status_code == 200, answer.text

    in_parallel(write, list(plan.items()))
    vault.known.update(plan)


def seed_ephemeral(server: ServerProcess, vault: Vault, rng: random.Random, count: int) -> None:
    """Creates ``count`` ephemeral secrets without a read limit."""
    planned = {f"once/e{n:03d}": make_value(rng, f"ephemeral/{n}") for n in range(count)}

    def create(items: list[tuple[str, str]]) -> None:
        with client_for(server) as client:
            for key, value in items:
                answer = client.post("/api/v1/ephemeral", json={"key": key, "value": value})
                assert answer.status_code == 201, answer.text

    in_parallel(create, list(planned.items()))
    vault.ephemeral.update(planned)


def misreads(server: ServerProcess, vault: Vault) -> list[str]:
    """Everything the server does not serve exactly as written: each environment's export
    (every current value), every older version read one by one, every ephemeral secret."""
    problems: list[str] = []
    groups = sorted({(p, e) for p, e, _ in vault.known})
    with client_for(server) as client:
        for project, environment in groups:
            answer = client.get(
                f"/api/v1/projects/{project}/environments/{environment}/export",
                params={"format": "json"},
            )
            if answer.status_code != 200:
                problems.append(
                    f"export {project}/{environment}: {answer.status_code} {answer.text}"
                )
                continue
            expected = {
                k: v[-1] for (p, e, k), v in vault.known.items() if (p, e) == (project, environment)
            }
            if answer.json() != expected:
                got = answer.json()
                problems += [
                    f"{project}/{environment}/{key}: current {got.get(key)!r}, wrote {value!r}"
                    for key, value in expected.items()
                    if got.get(key) != value
                ]
                problems += [
                    f"{project}/{environment}/{k}: never written" for k in set(got) - set(expected)
                ]
    reads: list[tuple[str, str, dict[str, int] | None]] = [
        (secret_path(*secret), value, {"version": n})
        for secret, values in vault.known.items()
        for n, value in enumerate(values[:-1], start=1)
    ]
    reads += [(f"/api/v1/ephemeral/{key}", value, None) for key, value in vault.ephemeral.items()]

    def read(chunk: list[tuple[str, str, dict[str, int] | None]]) -> list[str]:
        wrong = []
        with client_for(server) as client:
            for path, value, params in chunk:
                answer = client.get(path, params=params)
                if answer.status_code != 200 or answer.json().get("value") != value:
                    wrong.append(f"{path} {params or ''}: {answer.status_code} {answer.text[:200]}")
        return wrong

    for wrong in in_parallel(read, reads):
        problems += wrong
    return problems


def check_reads(server: ServerProcess, vault: Vault, chaos: Chaos) -> None:
    problems = misreads(server, vault)
    assert problems == [], chaos.why("\n".join(problems[:20]))


def coffer(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    """Starts ``python -m coffer ARGS`` with its output in pipes (not waited for)."""
    return subprocess.Popen(
        [sys.executable, "-m", "coffer", *args],
        env=env,
        cwd=env["HOME"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    """Waits for ``process``; returns its exit code (negative: killed), stdout and stderr."""
    out, err = process.communicate(timeout=PROCESS_TIMEOUT_S)
    return process.returncode, out, err


def run_coffer(args: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    return finish(coffer(args, env))


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Polls ``condition`` every 10 ms; returns the moment it held (monotonic), fails the
    test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return time.monotonic()
        time.sleep(0.01)
    pytest.fail(f"timed out waiting for {what}")


def verify_audit(vault: Vault, server: ServerProcess, chaos: Chaos) -> None:
    """``coffer audit verify`` against ``server`` reports the whole log intact."""
    code, out, err = run_coffer(["audit", "verify", "--json"], vault.cli_env(server))
    assert code == 0, chaos.why(f"audit verify exited {code}: {out}{err}")
    assert json.loads(out)["ok"] is True


def audit_metadata(vault: Vault, action: str) -> list[dict[str, Any]]:
    """The metadata of every audit entry ``action``, oldest first, from the table itself
    (system entries such as ``key.root_rotated`` belong to no organization's API view)."""
    rows = vault.query("SELECT metadata FROM audit_log WHERE action = :a ORDER BY seq", a=action)
    return [json.loads(m) if isinstance(m, str) else m for (m,) in rows]


# --- rotate-key: the server is killed ---------------------------------------------------------


class Writer(threading.Thread):
    """Writes through ``server``, one write every ``pause`` seconds, until stopped or the
    server goes away:
    with ``secrets_of`` a new version of one of that project's development keys, else an
    ephemeral secret (and, every 8th write, a new project with one secret). A write whose
    answer never came is ``cut_off``: it may or may not have committed."""

    def __init__(
        self,
        server: ServerProcess,
        vault: Vault,
        rng: random.Random,
        *,
        secrets_of: str | None,
        pause: float,
    ) -> None:
        super().__init__(daemon=True)
        self._server = server
        self._pause = pause
        self._vault = vault
        self._rng = random.Random(rng.random())
        self._project = secrets_of
        self._halt = threading.Event()
        self.cut_off: tuple[SecretId, str] | None = None
        self.refused: list[str] = []
        self.written = 0

    def run(self) -> None:
        with client_for(self._server) as client:
            while not self._halt.is_set():
                try:
                    if not self._write(client):
                        return
                except httpx.TransportError:
                    return
                self.written += 1
                self._halt.wait(self._pause)

    def _write(self, client: httpx.Client) -> bool:
        if self._project is None:
            return self._write_sealed(client)
        keys = sorted(s for s in self._vault.known if s[:2] == (self._project, "development"))
        secret = self._rng.choice(keys)
        value = make_value(self._rng, f"{'/'.join(secret)}/during")
        self.cut_off = (secret, value)
        answer = client.put(secret_path(*secret), json={"value": value})
        self.cut_off = None
        return self._accepted(answer, lambda: self._vault.known[secret].append(value))

    def _write_sealed(self, client: httpx.Client) -> bool:
        serial = len(self._vault.ephemeral) + len(self._vault.known)
        if serial % 8 == 0:
            project = f"w{serial}"
            created = client.post("/api/v1/projects", json={"name": project})
            if not self._accepted(created, lambda: None):
                return False
            secret = (project, "development", "KEY")
            value = make_value(self._rng, f"{project}/new")
            answer = client.put(secret_path(*secret), json={"value": value})
            return self._accepted(answer, lambda: self._vault.known.update({secret: [value]}))
        key, value = f"during/e{serial}", make_value(self._rng, f"ephemeral/{serial}")
        answer = client.post("/api/v1/ephemeral", json={"key": key, "value": value})
        return self._accepted(answer, lambda: self._vault.ephemeral.update({key: value}))

    def _accepted(self, answer: httpx.Response, record: Callable[[], None]) -> bool:
        if answer.status_code not in (200, 201):
            self.refused.append(f"{answer.request.url}: {answer.status_code} {answer.text}")
            return False
        record()
        return True

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=PROCESS_TIMEOUT_S)


def settle_cut_off(server: ServerProcess, vault: Vault, cut_off: tuple[SecretId, str]) -> str:
    """Decides from the key's history whether the write cut off by the kill committed (then
    its value is the newest version) or not; returns which, fails when neither holds."""
    (project, environment, key), value = cut_off
    known = vault.known[(project, environment, key)]
    with client_for(server) as client:
        answer = client.get(f"/api/v1/projects/{project}/environments/{environment}/history/{key}")
    assert answer.status_code == 200, answer.text
    newest = answer.json()["versions"][0]["version"]
    if newest == len(known) + 1:
        known.append(value)
        return "committed"
    assert newest == len(known), f"{key}: newest version {newest}, {len(known)} known"
    return "rolled back"


def rotation_status(server: ServerProcess, project: str) -> dict[str, Any]:
    with client_for(server) as client:
        answer = client.get(f"/api/v1/projects/{project}/key-rotation")
    assert answer.status_code == 200, answer.text
    status: dict[str, Any] = answer.json()
    return status


def data_key_versions(vault: Vault, project: str) -> list[int]:
    """The data-key versions the database holds for ``project``."""
    rows = vault.query(
        "SELECT d.version FROM data_keys d JOIN projects p ON p.id = d.project_id "
        "WHERE p.name = :name ORDER BY d.version",
        name=project,
    )
    return [int(version) for (version,) in rows]


class RotationDriver(threading.Thread):
    """Drives alpha's data-key rotation through the API as ``coffer rotate-key --batch
    KEY_BATCH`` does (start or resume, then steps passing the cursor back until done), without
    a CLI start-up per round. ``reached`` is set once ``kill_after`` steps were answered (or
    the rotation ended); ``refused`` holds any answer that is not a success (a kill shows as a
    transport error instead)."""

    def __init__(self, server: ServerProcess, kill_after: int | None = None) -> None:
        super().__init__(daemon=True)
        self._server = server
        self._kill_after = kill_after
        self.reached = threading.Event()
        self.finished = False
        self.steps = 0
        self.refused: list[str] = []

    def run(self) -> None:
        path = f"/api/v1/projects/{ROTATED}/key-rotation"
        body: dict[str, Any] = {"batch": KEY_BATCH, "cursor": None}
        try:
            with client_for(self._server) as client:
                answer = client.post(path)
                while answer.status_code == 200 and not answer.json().get("done"):
                    if self.steps == self._kill_after:
                        self.reached.set()
                    answer = client.post(f"{path}/steps", json=body)
                    body["cursor"] = answer.json().get("cursor")
                    self.steps += 1
        except httpx.TransportError:
            return
        finally:
            self.reached.set()
        if answer.status_code != 200:
            self.refused.append(f"{answer.request.url}: {answer.status_code} {answer.text}")
        self.finished = answer.json().get("done") is True


@dataclass(frozen=True)
class KeyRound:
    """One rotation run: its steps, whether it finished, and the write the kill cut off
    (if one was)."""

    steps: int
    finished: bool
    cut_off: tuple[SecretId, str] | None


def rotate_key_round(
    server: ServerProcess, vault: Vault, chaos: Chaos, kill_after: int | None
) -> KeyRound:
    """Rotates alpha's data key with a writer alongside; with ``kill_after``, SIGKILLs the
    server at a random moment (up to STEP_JITTER_S) after that many steps were answered,
    so the kill lands inside a step or between two."""
    driver = RotationDriver(server, kill_after)
    writer = Writer(server, vault, chaos.rng, secrets_of=ROTATED, pause=KEY_WRITE_PAUSE_S)
    writer.start()
    driver.start()
    if kill_after is not None:
        driver.reached.wait(timeout=PROCESS_TIMEOUT_S)
        time.sleep(chaos.rng.uniform(0.0, STEP_JITTER_S))
        server.process.kill()
        server.process.wait(timeout=PROCESS_TIMEOUT_S)
    driver.join(timeout=PROCESS_TIMEOUT_S)
    writer.stop()
    assert driver.refused == writer.refused == [], chaos.why(driver.refused + writer.refused)
    assert kill_after is not None or driver.finished, chaos.why("the rotation did not finish")
    chaos.note(
        f"  rotation: {driver.steps} steps answered, "
        f"{'finished' if driver.finished else 'cut off'}; {writer.written} writes meanwhile"
    )
    return KeyRound(driver.steps, driver.finished, writer.cut_off)


@pytest.mark.parametrize("fresh_database", BACKENDS, indirect=True)
def test_rotate_key_survives_its_server_killed_at_random_moments(
    fresh_database: Database, tmp_path: Path, chaos: Chaos
) -> None:
    """Killing the server at random moments of a data-key rotation loses no secret version,
    nor a write made meanwhile; running the rotation again completes it, with the old keys
    destroyed and ``key.rotated`` once per key version."""
    vault, first = new_vault(fresh_database, tmp_path)
    relay = Relay(vault, first, ahead=2)  # a server a round: give each two rounds to boot
    try:
        seed_secrets(first, vault, chaos.rng, KEY_LAYOUT)
        chaos.note(f"seeded {sum(map(len, vault.known.values()))} versions")
        # an uninterrupted run first: it must work, and it counts the steps of a pass
        steps = rotate_key_round(first, vault, chaos, kill_after=None).steps
        mid_way: list[int] = []  # the rounds whose kill left a rotation under way
        planned = rounds(KEY_ROUNDS, fresh_database.backend)
        for round_no in extra_rounds(planned, lambda: bool(mid_way)):
            kill_after = chaos.rng.randint(0, steps)
            chaos.note(f"round {round_no}: kill after step {kill_after} of about {steps}")
            done = rotate_key_round(relay.current, vault, chaos, kill_after)
            server = relay.pass_on()
            if done.cut_off is not None:
                chaos.note(f"  a write cut off: {settle_cut_off(server, vault, done.cut_off)}")
            status = rotation_status(server, ROTATED)
            if status["running"]:
                mid_way.append(round_no)
            chaos.note(
                f"  key version {status['key_version']}, retiring "
                f"{status['retiring_key_versions']}, {status['remaining_versions']} of "
                f"{status['total_versions']} versions left"
            )
            check_reads(server, vault, chaos)
            assert rotation_status(server, BYSTANDER)["key_version"] == 1
        assert mid_way, chaos.why("no kill landed while a rotation was under way")

        args = ["rotate-key", "-p", ROTATED, "--batch", str(KEY_BATCH), "--json"]
        code, out, err = run_coffer(args, vault.cli_env(relay.current))
        assert code == 0, chaos.why(f"the last rotate-key exited {code}: {err}")
        final = json.loads(out)["key_version"]
        server = relay.successor()  # started after a kill; ran through the last rotation
        assert rotation_status(server, ROTATED) == {
            "project": ROTATED,
            "key_version": final,
            "retiring_key_versions": [],
            "running": False,
            "total_versions": sum(len(v) for s, v in vault.known.items() if s[0] == ROTATED),
            "remaining_versions": 0,
        }
        assert data_key_versions(vault, ROTATED) == [final]
        assert data_key_versions(vault, BYSTANDER) == [1]
        rotated = [m["key_version"] for m in audit_metadata(vault, "key.rotated")]
        assert rotated == list(range(2, final + 1)), chaos.why(f"key.rotated entries: {rotated}")
        check_reads(server, vault, chaos)
        verify_audit(vault, server, chaos)
    finally:
        relay.stop()


# --- rotate-root: the local process is killed -------------------------------------------------


def root_generations(vault: Vault) -> dict[int, str]:
    """Every root-key generation and its state."""
    rows = vault.query("SELECT generation, state FROM root_keys ORDER BY generation")
    return {int(generation): str(state) for generation, state in rows}


def pending(vault: Vault) -> int | None:
    """The pending root-key generation (a rotation under way), if any."""
    found = [g for g, state in root_generations(vault).items() if state == "pending"]
    return found[0] if found else None


def blobs_left(vault: Vault, generation: int) -> int:
    """How many KEK-sealed blobs (wrapped data keys, ephemeral values) are not yet sealed
    under ``generation``: what the rotation to it still has to move."""
    prefix = generation_prefix(generation)
    blobs = vault.query("SELECT wrapped_key FROM data_keys")
    blobs += vault.query("SELECT ciphertext FROM ephemeral_secrets WHERE kind = 'secret'")
    return sum(not bytes(blob).startswith(prefix) for (blob,) in blobs)


def rotate_root_round(
    server: ServerProcess, vault: Vault, chaos: Chaos, wait_to_kill: Callable[[], None] | None
) -> None:
    """Runs ``coffer rotate-root`` with a writer on ``server``. With ``wait_to_kill``
    SIGKILLs it once that returns; without, it must succeed."""
    args = ["rotate-root", "--dir", str(vault.directory), "--batch", str(ROOT_BATCH)]
    spawned = time.monotonic()
    cli = coffer([*args, "--yes", "--json"], vault.cli_env())
    writer = Writer(server, vault, chaos.rng, secrets_of=None, pause=ROOT_WRITE_PAUSE_S)
    writer.start()
    if wait_to_kill is not None:
        wait_to_kill()
        cli.kill()
    code, out, err = finish(cli)
    ended = time.monotonic()
    writer.stop()
    assert writer.refused == [], chaos.why(writer.refused)
    assert wait_to_kill is not None or code == 0, chaos.why(f"rotate-root exited {code}: {err}")
    assert code in (0, -9), chaos.why(f"rotate-root exited {code}: {out}{err}")
    chaos.note(
        f"  rotate-root: {'killed' if code else 'finished'} after {ended - spawned:.2f} s, "
        f"{writer.written} writes meanwhile; generations now {root_generations(vault)}"
    )


def kill_while_resealing(vault: Vault, chaos: Chaos) -> Callable[[], None]:
    """Waits for a pending generation (or takes the one under way), then until the
    rotation has moved a random number of the blobs it still had to move."""

    def wait() -> None:
        wait_for(lambda: pending(vault) is not None, PROCESS_TIMEOUT_S, "a pending generation")
        generation = pending(vault)
        assert generation is not None
        left = blobs_left(vault, generation)
        target = chaos.rng.randint(0, max(0, left - 1))
        chaos.note(f"  kill once {target} of {left} blobs are left to move")
        wait_for(
            lambda: pending(vault) != generation or blobs_left(vault, generation) <= target,
            PROCESS_TIMEOUT_S,
            f"the rotation to move all but {target} blobs",
        )

    return wait


def kill_anywhere(chaos: Chaos, longest: float) -> Callable[[], None]:
    """Waits a random time up to ``longest`` seconds (a whole uninterrupted run)."""
    return lambda: time.sleep(chaos.rng.uniform(0, longest))


@pytest.mark.parametrize("fresh_database", BACKENDS, indirect=True)
def test_rotate_root_survives_being_killed_at_random_moments(
    fresh_database: Database, tmp_path: Path, chaos: Chaos
) -> None:
    """Killing ``coffer rotate-root`` at random moments leaves a vault that a running server
    and a newly started one both serve in full; running it again completes the rotation."""
    vault, first = new_vault(fresh_database, tmp_path)
    relay = Relay(vault, first)
    next_key = vault.directory / "root.key.next"
    try:
        seed_secrets(first, vault, chaos.rng, ROOT_LAYOUT)
        seed_ephemeral(first, vault, chaos.rng, EPHEMERAL_SECRETS)
        chaos.note(f"seeded {len(vault.known)} secrets, {len(vault.ephemeral)} ephemeral")
        started = time.monotonic()
        rotate_root_round(first, vault, chaos, wait_to_kill=None)
        longest = time.monotonic() - started
        assert root_generations(vault) == {1: "retired", 2: "active"}
        assert not next_key.exists()
        mid_way: list[int] = []  # the rounds whose kill left a rotation under way
        planned = rounds(ROOT_ROUNDS, fresh_database.backend)
        for round_no in extra_rounds(planned, lambda: bool(mid_way)):
            anywhere = round_no % 3 == 2
            chaos.note(f"round {round_no}: kill {'anywhere' if anywhere else 'while re-sealing'}")
            waiting = (
                kill_anywhere(chaos, longest) if anywhere else kill_while_resealing(vault, chaos)
            )
            rotate_root_round(relay.current, vault, chaos, waiting)
            states = sorted(root_generations(vault).values())
            assert states.count("active") == 1 and states.count("pending") <= 1, chaos.why(states)
            if "pending" in states:
                mid_way.append(round_no)
                assert next_key.exists(), chaos.why("a pending generation without root.key.next")
            # every third round a server started after a kill, else the one that ran through it
            check_reads(relay.pass_on() if round_no % 3 == 2 else relay.current, vault, chaos)
        assert mid_way, chaos.why("no kill landed while a rotation was under way")

        before = max(g for g, state in root_generations(vault).items() if state == "active")
        rotate_root_round(relay.current, vault, chaos, wait_to_kill=None)
        generations = root_generations(vault)
        assert generations == {
            **{g: "retired" for g in range(1, before + 1)},
            before + 1: "active",
        }, chaos.why(generations)
        assert not next_key.exists()
        rotated = [m["generation"] for m in audit_metadata(vault, "key.root_rotated")]
        assert rotated == list(range(2, before + 2)), chaos.why(f"key.root_rotated: {rotated}")
        server = relay.successor()  # started after a kill; ran through the last rotation
        check_reads(server, vault, chaos)
        verify_audit(vault, server, chaos)
    finally:
        relay.stop()


# --- backup restore: the restore is killed ----------------------------------------------------


@dataclass
class Target:
    """Where a restore goes: a vault directory (the root key file is copied there) and its
    database, a SQLite file in it or a fresh PostgreSQL schema. ``vault`` expects the
    source's values."""

    vault: Vault
    database: Database

    def began_since(self, moment: float) -> bool:
        """True while a restore started after ``moment`` (``time.time()``) is writing the
        target's database: on SQLite it made ``coffer.db.restoring`` afresh; on PostgreSQL
        another session holds a write lock on a table of the target's schema."""
        if self.database.is_sqlite:
            work = self.vault.directory / "coffer.db.restoring"
            try:
                return work.stat().st_mtime >= moment
            except FileNotFoundError:
                return False
        return bool(
            self.vault.query(
                "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = :schema "
                "AND l.mode IN ('RowExclusiveLock', 'AccessExclusiveLock') "
                "AND l.pid <> pg_backend_pid()",
                schema=self.database.schema,
            )[0][0]
        )

    def holds_vault(self) -> bool:
        """True when the target's database holds a vault (one that a server would open)."""
        if self.database.is_sqlite:
            return (self.vault.directory / "coffer.db").exists()
        try:
            rows = self.vault.query(
                "SELECT count(*) FROM vault_meta WHERE name = 'root_key_check_value'"
            )
        except sa.exc.ProgrammingError:  # no schema yet
            return False
        return bool(rows[0][0])


@pytest.fixture
def targets(tmp_path: Path) -> Iterator[Callable[[Vault, str], Target]]:
    """Makes restore targets for a source vault on a backend; drops them afterwards."""
    made: list[Target] = []

    def new_target(source: Vault, backend: str) -> Target:
        database = open_database(backend)
        directory = tmp_path / f"restored-{len(made)}"
        vault = Vault(directory, database.url_for(directory), source.home, source.token)
        vault.known, vault.ephemeral = source.known, source.ephemeral
        made.append(Target(vault, database))
        return made[-1]

    try:
        yield new_target
    finally:
        for target in made:
            target.vault.close()
            close_database(target.database)


def restore_into(target: Target, archive: Path, key_file: Path) -> subprocess.Popen[str]:
    """Starts ``coffer backup restore ARCHIVE --dir TARGET --root-key-file KEY``."""
    args = ["backup", "restore", str(archive), "--dir", str(target.vault.directory)]
    return coffer([*args, "--root-key-file", str(key_file), "--json"], target.vault.cli_env())


def check_restored(target: Target, chaos: Chaos) -> None:
    """The target is a whole vault: its root key is there, and a server started on it
    serves every secret and ephemeral secret of the source. (The restore itself verified
    the audit log before it committed.)"""
    key_file = target.vault.directory / "root.key"
    assert key_file.exists(), chaos.why(f"a restored database without its root key {key_file}")
    server = start_server(
        target.vault.directory,
        target.vault.url,
        target.vault.directory.parent / f"{target.vault.directory.name}.log",
        target.vault.home,
        extra_env=QUIET,
    )
    server.token = target.vault.token
    try:
        check_reads(server, target.vault, chaos)
    finally:
        server.stop()


@pytest.mark.parametrize("fresh_database", BACKENDS, indirect=True)
def test_killed_restore_leaves_no_vault_or_the_whole_vault(
    fresh_database: Database,
    tmp_path: Path,
    chaos: Chaos,
    targets: Callable[[Vault, str], Target],
) -> None:
    """Killing ``coffer backup restore`` at random moments leaves the target without a vault
    (and the restore, run again on what was left, succeeds) or with the whole vault; never
    with part of one."""
    source, server = new_vault(fresh_database, tmp_path)
    archive = tmp_path / "vault.backup"
    key_file = source.directory / "root.key"
    try:
        seed_secrets(server, source, chaos.rng, ROOT_LAYOUT)
        seed_ephemeral(server, source, chaos.rng, EPHEMERAL_SECRETS // 2)
        code, out, err = run_coffer(
            ["backup", "create", str(archive), "--dir", str(source.directory), "--json"],
            source.cli_env(),
        )
        assert code == 0, f"backup create exited {code}: {out}{err}"
    finally:
        server.stop()
        source.close()
    backend = fresh_database.backend

    # an uninterrupted restore first: it must work, and it times the kills
    target = targets(source, backend)
    spawned = time.monotonic()
    restore = restore_into(target, archive, key_file)
    began = wait_for(lambda: target.began_since(0), PROCESS_TIMEOUT_S, "the restore to begin")
    ended = wait_for(target.holds_vault, PROCESS_TIMEOUT_S, "the restore to end")
    code, out, err = finish(restore)
    assert code == 0, f"backup restore exited {code}: {out}{err}"
    versions = sum(map(len, source.known.values()))
    assert json.loads(out)["secret_versions"] == versions
    startup, work = began - spawned, ended - began
    chaos.note(f"restore: {startup:.2f} s start-up, {work:.2f} s of work")

    target = targets(source, backend)
    mid_way: list[int] = []  # the rounds whose kill cut a restore short
    for round_no in extra_rounds(rounds(RESTORE_ROUNDS, backend), lambda: bool(mid_way)):
        anywhere = round_no % 3 == 2
        chaos.note(f"round {round_no}: kill {'anywhere' if anywhere else 'while it restores'}")
        spawned = time.time()
        restore = restore_into(target, archive, key_file)
        if anywhere:
            time.sleep(chaos.rng.uniform(0, startup + work))
        else:
            wait_for(functools.partial(target.began_since, spawned), PROCESS_TIMEOUT_S, "it")
            time.sleep(chaos.rng.uniform(0, 0.9 * work))
        began = target.began_since(spawned)
        restore.kill()
        code, out, err = finish(restore)
        assert code in (0, -9), chaos.why(f"backup restore exited {code}: {out}{err}")
        if target.holds_vault():
            chaos.note(f"  exit {code}: the whole vault is there")
            check_restored(target, chaos)
            target = targets(source, backend)
        else:
            chaos.note(f"  exit {code}: no vault (killed while it restored: {began})")
            if began:
                mid_way.append(round_no)
    assert mid_way, chaos.why("no kill landed while a restore was under way")

    code, out, err = finish(restore_into(target, archive, key_file))
    assert code == 0, chaos.why(f"the restore after the kills exited {code}: {out}{err}")
    assert json.loads(out)["secret_versions"] == versions
    check_restored(target, chaos)


# --- crash windows too narrow for a random kill -----------------------------------------------


def test_an_empty_next_root_key_left_by_a_crash_does_not_stop_the_vault(
    tmp_path: Path, chaos: Chaos
) -> None:
    """A rotate-root killed between creating ``root.key.next`` and writing the key into it
    leaves an empty file (no pending generation was recorded yet). The vault must still open
    under its root key, and rotate-root run again must replace the stray file and finish."""
    vault, server = new_vault(Database("sqlite"), tmp_path)
    try:
        seed_secrets(server, vault, chaos.rng, ROOT_LAYOUT[:1])
    finally:
        server.stop()
    stray = vault.directory / "root.key.next"
    os.close(os.open(stray, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    try:
        reopened = start_server(
            vault.directory, vault.url, tmp_path / "reopened.log", vault.home, extra_env=QUIET
        )
    except pytest.fail.Exception as exc:
        raise AssertionError(f"the vault no longer opens: {exc}") from None
    reopened.token = vault.token
    try:
        check_reads(reopened, vault, chaos)
    finally:
        reopened.stop()
    args = ["rotate-root", "--dir", str(vault.directory), "--yes", "--json"]
    code, out, err = run_coffer(args, vault.cli_env())
    assert code == 0, f"rotate-root exited {code}: {out}{err}"
    assert not stray.exists()


def test_a_restore_cut_off_after_its_root_key_was_copied_can_run_again(
    tmp_path: Path, chaos: Chaos
) -> None:
    """``backup restore --root-key-file`` copies the key file first, then builds the database
    aside and moves it into place. Killed in between, it leaves the key and a half-built
    ``coffer.db.restoring`` but no vault; run again, the restore starts afresh and finishes
    (a database without its key can no longer happen)."""
    source, server = new_vault(Database("sqlite"), tmp_path)
    archive = tmp_path / "vault.backup"
    try:
        seed_secrets(server, source, chaos.rng, ROOT_LAYOUT[:1])
    finally:
        server.stop()
    code, out, err = run_coffer(
        ["backup", "create", str(archive), "--dir", str(source.directory)], source.cli_env()
    )
    assert code == 0, f"backup create exited {code}: {out}{err}"
    target = Vault(tmp_path / "restored", "", source.home, source.token, known=source.known)
    target.url = f"sqlite:///{target.directory / 'coffer.db'}"
    args = ["backup", "restore", str(archive), "--dir", str(target.directory)]
    args += ["--root-key-file", str(source.directory / "root.key")]
    code, out, err = run_coffer(args, target.cli_env())
    assert code == 0, f"backup restore exited {code}: {out}{err}"
    # the state a kill leaves: the key copied, the database only half built aside
    (target.directory / "coffer.db").unlink()
    (target.directory / "coffer.db.restoring").write_bytes(b"SQLite format 3\x00 half")

    code, out, err = run_coffer(args, target.cli_env())
    assert code == 0, f"the restore run again exited {code}: {out}{err}"
    restored = start_server(
        target.directory, target.url, tmp_path / "restored.log", target.home, extra_env=QUIET
    )
    restored.token = target.token
    try:
        check_reads(restored, target, chaos)
    finally:
        restored.stop()

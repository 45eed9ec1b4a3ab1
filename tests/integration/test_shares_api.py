"""Share links over HTTP: creation (authenticated), the interstitial page and HEAD (never
counted), the reveal (once, only with the key's proof, by anyone holding the link), sealing,
expiry, the page's Content-Security-Policy, the audit trail of an anonymous reader, and what
the server stores: ciphertext and hashes, never the plaintext, the key, the token or the
proof.

One organization per backend serves the whole module; every test makes its own shares.
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import pytest

from coffer.crypto.share_cipher import decode_share_key, open_share, seal_share, share_proof
from coffer.crypto.tokens import hash_token
from tests.integration.api_helpers import all_rows_text, row_counts
from tests.integration.org_world import OrgWorld as Org
from tests.integration.org_world import served_org
from tests.integration.team_helpers import (
    API,
    CLIENT_ADDRESS,
    bearer,
)

SHARES = f"{API}/shares"
DAY = 86_400
NOT_FOUND = {
    "error": {
        "code": "not_found",
        "message": "share not found: the link is wrong, has expired or was already opened",
        "field": "token",
    }
}
SHARE_CSP = (
    "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'; "
    "script-src 'self'; style-src 'self'; connect-src 'self'"
)


@dataclass
class Link:
    """A share as its creator holds it: the plaintext, the link's parts, and the answer."""

    plaintext: bytes
    key_text: str
    envelope: bytes
    created: dict[str, Any]

    @property
    def token(self) -> str:
        """The token in the link's path."""
        token: str = self.created["token"]
        return token

    @property
    def proof(self) -> str:
        """The proof of the key that a reveal presents."""
        return share_proof(decode_share_key(self.key_text))

    @property
    def id(self) -> str:
        """The share's id (the key of its audit entries)."""
        share_id: str = self.created["id"]
        return share_id


@pytest.fixture(scope="module")
def org(module_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Org]:
    """acme and rival (see org_world), once per backend."""
    with served_org(module_database_url, tmp_path_factory.mktemp("shares")) as world:
        yield world


def _share(org: Org, plaintext: bytes, who: str = "owner", **limits: Any) -> Link:
    """Seals ``plaintext`` as the CLI does and stores the share, asserting 201."""
    key_text, envelope = seal_share(plaintext)
    body = {
        "ciphertext": base64.b64encode(envelope).decode("ascii"),
        "proof": share_proof(decode_share_key(key_text)),
        **limits,
    }
    response = org.call(who, "POST", SHARES, json=body)
    assert response.status_code == 201, response.text
    return Link(plaintext, key_text, envelope, response.json())


def _reveal(org: Org, token: str, proof: Any, who: str | None = None) -> httpx.Response:
    return org.call(who, "POST", f"{SHARES}/{token}/reveal", json={"proof": proof})


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _x_coffer(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.startswith("x-coffer-")}


def _trail(org: Org, share_id: str, who: str = "owner") -> list[dict[str, Any]]:
    """The audit entries about the share, oldest first, as ``who`` sees them through
    GET /api/v1/audit."""
    response = org.call(who, "GET", f"{API}/audit", params={"key": share_id, "limit": "1000"})
    assert response.status_code == 200, response.text
    return list(reversed(response.json()["entries"]))


def _limits(link: Link, *, read_count: int = 0, max_reads: int | None = 1, **rest: Any) -> Any:
    remaining = None if max_reads is None else max(0, max_reads - read_count)
    return {
        "status": rest.get("status", "active"),
        "expires_at": link.created["limits"]["expires_at"],
        "max_reads": max_reads,
        "read_count": read_count,
        "reads_remaining": remaining,
        "delete": rest.get("delete", True),
    }


# -- create ---------------------------------------------------------------------------------


def test_creating_a_share_needs_a_token_and_returns_the_link_path(org: Org) -> None:
    """Without a token: 401 and nothing stored. With one (a person's or a machine's): 201
    with the share's id, its link token and path, one read and one day (exactly, counted
    from creation), recorded as secret.created of kind "share"."""
    key_text, envelope = seal_share(b"needs-auth")
    body = {
        "ciphertext": base64.b64encode(envelope).decode(),
        "proof": share_proof(decode_share_key(key_text)),
    }
    before = row_counts(org.services.engine)
    anonymous = org.call(None, "POST", SHARES, json=body)
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "unauthenticated"
    assert row_counts(org.services.engine) == before
    started = time.time()
    link = _share(org, b"first share")
    ended = time.time()
    assert set(link.created) == {"id", "token", "path", "limits"}
    assert re.fullmatch(r"[A-Za-z0-9_-]{24}", link.token)
    assert link.created["path"] == f"/s/{link.token}"
    expires_at = link.created["limits"]["expires_at"]
    assert started + DAY - 0.001 <= _epoch(expires_at) <= ended + DAY
    assert link.created["limits"] == _limits(link)
    entries = _trail(org, link.id)
    assert [(e["action"], e["actor"], e["metadata"]) for e in entries] == [
        (
            "secret.created",
            {"id": org.ids["owner"], "kind": "user"},
            {"kind": "share", "ttl_seconds": DAY, "max_reads": 1},
        )
    ]
    by_machine = _share(org, b"robot share", who="robot", max_reads=3, ttl_seconds="1h")
    assert by_machine.created["limits"]["max_reads"] == 3
    assert _trail(org, by_machine.id)[0]["actor"] == {"id": org.ids["robot"], "kind": "machine"}


# -- the page, HEAD and the reveal ----------------------------------------------------------------


def test_the_page_and_head_never_count_and_the_reveal_works_once(org: Org) -> None:
    """Three loads of /s/{token} (200, a page with the reveal button) and three HEADs of
    the page and of the share count nothing and record nothing; the reveal returns the
    ciphertext, which the link's key opens; a second reveal is 404, and the page and HEAD
    are then 404 too. The reader is recorded as an anonymous actor."""
    link = _share(org, "pässwörd ☃ shared".encode())
    expires_at = link.created["limits"]["expires_at"]
    for _ in range(3):
        page = org.call(None, "GET", f"/s/{link.token}")
        assert page.status_code == 200
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        assert (
            f'<button id="reveal" type="button" data-token="{link.token}">Reveal secret</button>'
            in page.text
        )
        assert '<p id="status" role="status"></p>' in page.text
        assert '<pre id="secret" hidden></pre>' in page.text
        assert '<button id="copy" type="button" hidden>Copy</button>' in page.text
        assert '<script src="/assets/share.js" defer></script>' in page.text
        assert f"It can be revealed 1 more time, it expires at {expires_at}." in page.text
        page_head = org.call(None, "HEAD", f"/s/{link.token}")
        assert (page_head.status_code, page_head.content) == (200, b"")
        head = org.call(None, "HEAD", f"{SHARES}/{link.token}")
        assert (head.status_code, _x_coffer(head)) == (
            200,
            {
                "x-coffer-status": "active",
                "x-coffer-read-count": "0",
                "x-coffer-max-reads": "1",
                "x-coffer-reads-remaining": "1",
                "x-coffer-expires-at": expires_at,
            },
        )
    assert [e["action"] for e in _trail(org, link.id)] == ["secret.created"]
    revealed = _reveal(org, link.token, link.proof)
    assert revealed.status_code == 200, revealed.text
    assert revealed.json() == {
        "ciphertext": base64.b64encode(link.envelope).decode("ascii"),
        "limits": _limits(link, read_count=1),
    }
    assert revealed.headers["cache-control"] == "no-store"
    ciphertext = base64.b64decode(revealed.json()["ciphertext"])
    assert open_share(link.key_text, ciphertext) == "pässwörd ☃ shared".encode()
    again = _reveal(org, link.token, link.proof)
    assert (again.status_code, again.json()) == (404, NOT_FOUND)
    page = org.call(None, "GET", f"/s/{link.token}")
    assert page.status_code == 404
    assert "This link has expired" in page.text
    assert 'id="reveal"' not in page.text
    assert org.call(None, "HEAD", f"{SHARES}/{link.token}").status_code == 404
    entries = _trail(org, link.id)
    assert [(e["action"], e["actor"], e["metadata"]) for e in entries[1:]] == [
        (
            "secret.read",
            {"id": None, "kind": "anonymous"},
            {
                "kind": "share",
                "read_count": 1,
                "max_reads": 1,
                "expires_at": int(_epoch(expires_at)),
            },
        ),
        (
            "secret.burned",
            {"id": None, "kind": "anonymous"},
            {"kind": "share", "read_count": 1, "max_reads": 1},
        ),
    ]
    assert {(e["org"], e["source_ip"]) for e in entries[1:]} == {
        (entries[0]["org"], CLIENT_ADDRESS)
    }


def test_a_wrong_proof_is_404_like_a_wrong_link_and_counts_nothing(org: Org) -> None:
    """Every wrong proof (another key's, the key itself, garbage, empty, huge) and a wrong
    token answer exactly like a link that does not exist, count no read and record
    nothing; the right proof then still has both reads, the page counting them down."""
    link = _share(org, b"proof-guarded", max_reads=2)
    other = seal_share(b"x")[0]
    wrong_proofs: list[Any] = [
        share_proof(decode_share_key(other)),
        link.key_text,
        "A" * 43,
        "",
        link.proof[:-1],
        link.proof + "A",
        link.proof.upper() if link.proof.upper() != link.proof else link.proof.lower(),
        "x" * 10_000,
    ]
    for proof in wrong_proofs:
        response = _reveal(org, link.token, proof)
        assert (response.status_code, response.json()) == (404, NOT_FOUND), proof
    for token in ("A" * 24, link.token[:-1], link.token + "A", "x" * 65, "%2E%2E"):
        response = _reveal(org, token, link.proof)
        assert (response.status_code, response.json()) == (404, NOT_FOUND), token
    bad_type = _reveal(org, link.token, 12345)
    assert (bad_type.status_code, bad_type.json()["error"]["field"]) == (400, "proof")
    assert _x_coffer(org.call(None, "HEAD", f"{SHARES}/{link.token}"))["x-coffer-read-count"] == "0"
    assert [e["action"] for e in _trail(org, link.id)] == ["secret.created"]
    page = org.call(None, "GET", f"/s/{link.token}")
    assert "It can be revealed 2 more times" in page.text
    first = _reveal(org, link.token, link.proof)
    assert first.json()["limits"] == _limits(link, read_count=1, max_reads=2)
    assert "It can be revealed 1 more time," in org.call(None, "GET", f"/s/{link.token}").text
    assert _reveal(org, link.token, link.proof).status_code == 200
    assert _reveal(org, link.token, link.proof).status_code == 404


def test_delete_false_seals_the_share(org: Org) -> None:
    """With delete=false the last reveal seals: reveals answer 410, the page says sealed
    (410), HEAD answers 410 with status sealed; a wrong proof still gets 404."""
    link = _share(org, b"seal-this", delete=False)
    assert _reveal(org, link.token, link.proof).status_code == 200
    sealed = _reveal(org, link.token, link.proof)
    assert sealed.status_code == 410
    assert sealed.json() == {
        "error": {
            "code": "gone",
            "message": "share is sealed: its read limit was reached",
            "field": "token",
        }
    }
    page = org.call(None, "GET", f"/s/{link.token}")
    assert page.status_code == 410
    assert "This share is sealed" in page.text and 'id="reveal"' not in page.text
    head = org.call(None, "HEAD", f"{SHARES}/{link.token}")
    assert (head.status_code, _x_coffer(head)["x-coffer-status"]) == (410, "sealed")
    wrong = _reveal(org, link.token, "A" * 43)
    assert (wrong.status_code, wrong.json()) == (404, NOT_FOUND)
    assert [e["action"] for e in _trail(org, link.id)] == [
        "secret.created",
        "secret.read",
        "secret.sealed",
    ]


def test_any_bearer_token_is_irrelevant_to_a_reveal(org: Org) -> None:
    """A reveal carrying another organization's token (or a bogus one) is the anonymous
    link holder's reveal: it counts, is recorded in the creator's organization as
    anonymous, and the other organization's audit log shows nothing of it."""
    link = _share(org, b"for-whoever-holds-the-link", max_reads=2)
    for who_headers in (bearer(org.tokens["rival"]), bearer("coffer_cli_bogus")):
        response = org.client.post(
            f"{SHARES}/{link.token}/reveal", json={"proof": link.proof}, headers=who_headers
        )
        assert response.status_code == 200, response.text
    actors = [(e["action"], e["actor"]) for e in _trail(org, link.id)[1:]]
    anonymous = {"id": None, "kind": "anonymous"}
    assert actors == [
        ("secret.read", anonymous),
        ("secret.read", anonymous),
        ("secret.burned", anonymous),
    ]
    assert _trail(org, link.id, who="rival") == []


# -- the page's protections ---------------------------------------------------------------------


def test_the_share_page_allows_only_its_own_script_and_no_inline_code(org: Org) -> None:
    """/s/ pages (live, spent or unknown) and /assets/ carry a CSP allowing scripts, styles
    and connections from 'self' only, no 'unsafe-inline'; the page itself has no inline
    script, style or event handler, is not cached and sends no referrer."""
    link = _share(org, b"csp")
    unknown = org.call(None, "GET", "/s/AAAAAAAAAAAAAAAAAAAAAAAA")
    assert unknown.status_code == 404
    script = org.call(None, "GET", "/assets/share.js")
    assert (script.status_code, script.headers["content-type"]) == (
        200,
        "text/javascript; charset=utf-8",
    )
    style = org.call(None, "GET", "/assets/share.css")
    assert style.headers["content-type"] == "text/css; charset=utf-8"
    page = org.call(None, "GET", f"/s/{link.token}")
    for response in (page, unknown, script, style):
        csp = response.headers["content-security-policy"]
        assert csp == SHARE_CSP
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["x-frame-options"] == "DENY"
    assert page.headers["cache-control"] == "no-store"
    scripts = re.findall(r"<script\b[^>]*>(.*?)</script>", page.text, flags=re.S)
    assert scripts == [""]  # one script, external
    assert re.findall(r"<script\b([^>]*)>", page.text) == [' src="/assets/share.js" defer']
    assert not re.search(r"\son[a-z]+\s*=", page.text)
    assert "<style" not in page.text and " style=" not in page.text
    assert "javascript:" not in page.text
    injected = org.call(None, "GET", '/s/"><script>alert(1)</script>')
    assert injected.status_code == 404
    assert "<script>alert" not in injected.text and "alert(1)" not in injected.text
    assert org.call(None, "GET", "/assets/other.js").status_code == 404
    assert org.call(None, "GET", "/assets/..%2Fshares.py").status_code == 404
    assert [e["action"] for e in _trail(org, link.id)] == ["secret.created"]


# -- what the server keeps ----------------------------------------------------------------------


def test_the_database_holds_only_ciphertext_and_hashes(org: Org) -> None:
    """Every column of every table, before and after the reveal: the plaintext, the key
    text, the key's bytes, the link token and the proof appear nowhere; the token and the
    proof are stored as their hashes, the envelope as is."""
    plaintext = b"share-at-rest-Zq8Wm3Kc7Vb1Nx5"
    link = _share(org, plaintext, max_reads=2)
    key = decode_share_key(link.key_text)
    for stage in ("stored", "read"):
        text = all_rows_text(org.services.engine)
        assert hash_token(link.token) in text, stage
        assert hash_token(link.proof) in text, stage
        assert link.envelope.hex() in text, stage
        for secret in (
            plaintext.decode(),
            plaintext.hex(),
            link.key_text,
            key.hex(),
            link.token,
            link.proof,
        ):
            assert secret not in text, (stage, secret)
        if stage == "stored":
            assert _reveal(org, link.token, link.proof).status_code == 200


# -- refused input and expiry -----------------------------------------------------------------


def test_bad_input_names_the_field_and_changes_nothing(org: Org) -> None:
    """A ciphertext that is not base64, empty or too large, a malformed proof, and bad
    limits are refused naming the field, and change nothing."""
    envelope = seal_share(b"bad-input")[1]
    good = {
        "ciphertext": base64.b64encode(envelope).decode(),
        "proof": share_proof(bytes(32)),
    }
    too_large = base64.b64encode(bytes(65536 + 64 + 1)).decode()
    cases: list[tuple[dict[str, Any], int, str, str | None]] = [
        ({"ciphertext": "not base64!"}, 400, "ciphertext", "ciphertext must be base64"),
        ({"ciphertext": ""}, 400, "ciphertext", "ciphertext must not be empty"),
        (
            {"ciphertext": too_large},
            413,
            "ciphertext",
            "ciphertext is 65601 bytes; the limit is 65600 bytes (COFFER_MAX_VALUE_BYTES plus "
            "the envelope)",
        ),
        ({"proof": "A" * 42}, 400, "proof", None),
        ({"proof": "A" * 44}, 400, "proof", None),
        ({"proof": "+" * 43}, 400, "proof", None),
        ({"proof": 5}, 400, "proof", None),
        ({"ttl_seconds": 0}, 400, "ttl_seconds", "ttl_seconds must be at least 1 second"),
        ({"max_reads": None}, 400, "max_reads", "max_reads: a share needs a read limit"),
        ({"reads": 2}, 400, "reads", "reads: Extra inputs are not permitted"),
        ({"ttl_seconds": "10y"}, 400, "ttl_seconds", None),
        ({"ttl_seconds": True}, 400, "ttl_seconds", None),
        ({"max_reads": 0}, 400, "max_reads", "max_reads must be at least 1"),
        ({"max_reads": 1_000_001}, 400, "max_reads", None),
        ({"max_reads": "1"}, 400, "max_reads", None),
        ({"delete": "no"}, 400, "delete", None),
    ]
    before = row_counts(org.services.engine)
    for change, status, field_name, message in cases:
        response = org.call("owner", "POST", SHARES, json={**good, **change})
        error = response.json()["error"]
        assert (response.status_code, error["field"]) == (status, field_name), (
            change,
            response.text,
        )
        if message is not None:
            assert error["message"] == message
    assert row_counts(org.services.engine) == before


def test_an_expired_share_is_gone_and_the_pruner_reclaims_the_rest(org: Org) -> None:
    """After a 1-second TTL the page, HEAD and reveal all answer 404 (the reveal destroys
    it: secret.expired); the owner's prune destroys the other (secret.pruned) and reports
    one share."""
    read_link = _share(org, b"short-lived-1", ttl_seconds=1)
    pruned_link = _share(org, b"short-lived-2", ttl_seconds=1)
    live = _share(org, b"long-lived", ttl_seconds=3600)
    deadline = max(
        _epoch(link.created["limits"]["expires_at"]) for link in (read_link, pruned_link)
    )
    time.sleep(max(0.0, deadline + 0.05 - time.time()))
    for link in (read_link, pruned_link):
        assert org.call(None, "GET", f"/s/{link.token}").status_code == 404
        assert org.call(None, "HEAD", f"{SHARES}/{link.token}").status_code == 404
    expired = _reveal(org, read_link.token, read_link.proof)
    assert (expired.status_code, expired.json()) == (404, NOT_FOUND)
    assert [e["action"] for e in _trail(org, read_link.id)] == ["secret.created", "secret.expired"]
    pruned = org.call("owner", "POST", f"{API}/prune")
    assert pruned.json() == {"pruned": {"secrets": 0, "ephemeral": 0, "shares": 1}}
    last = _trail(org, pruned_link.id)[-1]
    assert (last["action"], last["metadata"]["kind"]) == ("secret.pruned", "share")
    assert _reveal(org, pruned_link.token, pruned_link.proof).status_code == 404
    assert _reveal(org, live.token, live.proof).status_code == 200

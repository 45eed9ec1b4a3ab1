"""A demo organization with months of history, for trying the compliance reports.

``seed_demo`` initialises a new vault and plays a story through the real HTTP API (the ASGI
app in this process, so every rule, audit entry and signature is the one a server makes) while
a simulated clock moves from ``months`` ago to now: people join, secrets are written with their
inventory and rotated on schedule, a leaked key is found and rotated, access is requested and
approved, an environment export gets a second approver, a project key is rotated, a review is
signed off and a contractor is offboarded. One production secret is left overdue, so the
control table has a failing control to show.

The clock is simulated by replacing ``time.time`` for the duration of the story (coffer reads
the time only through it); it is put back before ``seed_demo`` returns, whatever happens.
Nothing here is meant for a real vault: the command refuses a directory that holds one.
"""

from __future__ import annotations

import secrets
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyotp

with warnings.catch_warnings():
    # Starlette's test client notes a future move to another HTTP package; the story only
    # needs it to call the app in this process.
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from coffer.crypto.scan_fingerprints import encode_nonce, keyed_fingerprint, new_nonce

API = "/api/v1"
DAY = 86400.0
# The people's password, new for every demo and never shown: after logging in once, each acts
# through an API key of their own.
PASSWORD = secrets.token_urlsafe(18)
ORG = "acme"
PEOPLE = {
    "owner": ("olivia@acme.example", "owner"),
    "alice": ("alice@acme.example", "admin"),
    "carol": ("carol@acme.example", "admin"),
    "bob": ("bob@acme.example", "viewer"),
    "dave": ("dave.contractor@vendor.example", "viewer"),
}
# (project, environment, key, owner, system, sensitivity, rotation days)
SECRETS = (
    ("web", "production", "DATABASE_URL", "alice@acme.example", "PostgreSQL main", "secret", 90),
    ("web", "production", "STRIPE_API_KEY", "carol@acme.example", "Stripe", "secret", 60),
    ("web", "production", "SESSION_SECRET", "alice@acme.example", "web sessions", "secret", 30),
    ("web", "production", "SENDGRID_KEY", "bob@acme.example", "SendGrid mail", "confidential", 90),
    ("web", "staging", "DATABASE_URL", "alice@acme.example", "PostgreSQL staging", "internal", 180),
    ("billing", "production", "LEDGER_TOKEN", "carol@acme.example", "Ledger API", "secret", 30),
)
# The secret left without its last rotation: the demo's failing control (CC8.1).
LEFT_OVERDUE = ("billing", "production", "LEDGER_TOKEN")


@dataclass
class DemoClock:
    """A settable stand-in for ``time.time``."""

    now: float

    def time(self) -> float:
        """The simulated current time (Unix seconds)."""
        return self.now

    def advance(self, days: float) -> None:
        """Moves the clock forward; never backwards."""
        self.now += max(0.0, days) * DAY


@contextmanager
def simulated_time(clock: DemoClock) -> Iterator[None]:
    """Makes ``time.time`` answer ``clock`` until the block ends."""
    real = time.time
    time.time = clock.time
    try:
        yield
    finally:
        time.time = real


@dataclass
class DemoResult:
    """What ``seed_demo`` made: the owner's API key (the bootstrap token is revoked at the end,
    as a team would) and the story's landmarks."""

    owner_email: str
    owner_key: str
    started_at: float
    events: list[str] = field(default_factory=list)


class DemoStory:
    """Plays the demo story against ``client`` (an app over the new vault)."""

    def __init__(self, client: TestClient, clock: DemoClock, bootstrap: str) -> None:
        self.client = client
        self.clock = clock
        self.keys: dict[str, str] = {"owner": bootstrap}
        self.values: dict[tuple[str, str, str], str] = {}
        self.events: list[str] = []

    def call(self, who: str, method: str, path: str, body: Any = None, **params: Any) -> Any:
        """One API call as ``who``; raises RuntimeError with the answer when it fails."""
        response = self.client.request(
            method,
            f"{API}{path}",
            json=body,
            params=params or None,
            headers={"Authorization": f"Bearer {self.keys[who]}"},
        )
        if response.status_code >= 400:
            raise RuntimeError(f"demo step {method} {path} failed: {response.text[:300]}")
        return response.json() if response.content else None

    def note(self, text: str) -> None:
        """Records a landmark of the story, dated by the simulated clock."""
        stamp = time.strftime("%Y-%m-%d", time.gmtime(self.clock.now))
        self.events.append(f"{stamp}  {text}")

    def person_joins(self, name: str) -> None:
        """Invites ``name``, who accepts, logs in, makes an API key and enrols in MFA when an
        admin (the key acts for them in the rest of the story)."""
        email, role = PEOPLE[name]
        invitation = self.call("owner", "POST", "/members/invite", {"email": email, "role": role})
        accepted = self.client.post(
            f"{API}/invitations/accept", json={"token": invitation["token"], "password": PASSWORD}
        )
        if accepted.status_code != 201:
            raise RuntimeError(f"demo step accept invitation failed: {accepted.text[:300]}")
        self.login(name)
        if role == "admin":
            self.enrol_mfa(name)

    def login(self, name: str) -> None:
        """Logs ``name`` in and keeps an API key of theirs (valid 200 days) for the story."""
        email = PEOPLE[name][0]
        session = self.client.post(f"{API}/auth/login", json={"email": email, "password": PASSWORD})
        if session.status_code != 200:
            raise RuntimeError(f"demo step login failed: {session.text[:300]}")
        self.keys[f"{name}-session"] = session.json()["token"]
        key = self.call(f"{name}-session", "POST", "/keys", {"name": "demo", "expires_in": "200d"})
        self.keys[name] = key["token"]

    def enrol_mfa(self, name: str) -> None:
        """Enrols ``name`` in TOTP MFA with a code for the simulated time."""
        setup = self.call(f"{name}-session", "POST", "/mfa/setup")
        code = pyotp.TOTP(setup["secret"]).at(int(self.clock.now))
        self.call(f"{name}-session", "POST", "/mfa/enable", {"code": code})

    def write(self, who: str, project: str, env: str, key: str, comment: str) -> int:
        """Writes a new random value of ``key`` (a rotation); returns the version."""
        path = f"/projects/{project}/environments/{env}/secrets/{key}"
        value = self.new_value(project, env, key)
        return int(self.call(who, "PUT", path, {"value": value, "comment": comment})["version"])

    def new_value(self, project: str, env: str, key: str) -> str:
        """A fresh random value for ``key``, remembered for the leak scene."""
        value = f"demo-{key.lower()}-{secrets.token_urlsafe(18)}"
        self.values[(project, env, key)] = value
        return value

    def create_secrets(self) -> None:
        """Projects, environments, policies and the inventoried secrets."""
        for project in ("web", "billing"):
            self.call("owner", "POST", "/projects", {"name": project})
        production_policy = {
            "required_fields": ["owner", "system", "sensitivity"],
            "max_rotation_days": 90,
            "require_read_reason": True,
            "export_approvals": 2,
        }
        self.call("owner", "PUT", "/policies/production", production_policy)
        self.call("owner", "PUT", "/compliance-settings", {"root_rotation_approvals": 2})
        for project, env, key, owner, system, sensitivity, days in SECRETS:
            path = f"/projects/{project}/environments/{env}/secrets/{key}"
            inventory = {
                "owner": owner,
                "system": system,
                "sensitivity": sensitivity,
                "rotation_days": days,
                "description": f"{system} credential of {project}",
            }
            value = self.new_value(project, env, key)
            self.call("alice", "PUT", path, {"value": value, "inventory": inventory})
        self.call(
            "alice",
            "PUT",
            "/rotation/rotators/web/production/SESSION_SECRET",
            {"kind": "random", "length": 48, "alphabet": "base64url"},
        )
        self.note("projects web and billing, production policy, 6 inventoried secrets")

    def machine_reads(self) -> None:
        """The CI machine identity, restricted to an address, reads for a deploy."""
        self.call(
            "owner",
            "POST",
            "/machines",
            {"name": "ci-deploy", "scopes": ["web:production:read"], "allowed_ips": ["127.0.0.1"]},
        )
        token = self.call("owner", "POST", "/machines/ci-deploy/tokens", {"expires_in": "180d"})
        self.keys["ci"] = token["token"]
        self.deploy_read()

    def deploy_read(self) -> None:
        """The CI machine reads the production database URL, stating why."""
        path = "/projects/web/environments/production/secrets/DATABASE_URL"
        self.call("ci", "GET", path, reason="deploy of web")

    def rotate_due(self, day: int) -> None:
        """Rotates every secret whose period has passed on ``day`` of the story (except the
        one left overdue once its last rotation is skipped)."""
        for project, env, key, _owner, _system, _sensitivity, days in SECRETS:
            if day % days or ((project, env, key) == LEFT_OVERDUE and day > 60):
                continue
            if key == "SESSION_SECRET":
                self.call("alice", "POST", f"/rotation/rotate/{project}/{env}/{key}")
            else:
                self.write("alice", project, env, key, f"scheduled rotation (every {days} days)")

    def leak_and_fix(self) -> None:
        """``coffer scan --match-vault`` finds the Stripe key in a repository (the scan's
        keyed fingerprint, never the value, goes to the server); it is rotated the next day."""
        nonce = new_nonce()
        leaked = self.values[("web", "production", "STRIPE_API_KEY")]
        finding = {
            "fingerprint": keyed_fingerprint(nonce, leaked),
            "rule_id": "stripe-secret-key",
            "location": "deploy/settings.py:12@4f1c2e9",
        }
        body = {"nonce": encode_nonce(nonce), "findings": [finding], "project": "web"}
        self.call("carol", "POST", "/exposures/match", body)
        self.note("STRIPE_API_KEY found by a scan outside the vault")
        self.clock.advance(1)
        self.write("carol", "web", "production", "STRIPE_API_KEY", "rotated after the leak")
        self.note("STRIPE_API_KEY rotated")

    def access_requests(self) -> None:
        """Dave asks for billing read access for an incident (approved, expires); Bob asks
        for production write access (denied)."""
        asked = self.call(
            "dave", "POST", "/access-requests",
            {"project": "billing", "environment": "production", "access": "read",
             "reason": "incident INC-42: reconcile ledger", "duration": "8h"},
        )  # fmt: skip
        self.call("alice", "POST", f"/access-requests/{asked['id']}/approve", {"note": "ok"})
        denied = self.call(
            "bob", "POST", "/access-requests",
            {"project": "web", "environment": "production", "access": "write",
             "reason": "hotfix config", "duration": "2d"},
        )  # fmt: skip
        self.call("carol", "POST", f"/access-requests/{denied['id']}/deny", {"note": "use CI"})
        self.note("access requests: one approved for 8h, one denied")

    def approved_export(self) -> None:
        """Alice exports web/production with Carol's approval (separation of duties)."""
        approval = self.call(
            "alice", "POST", "/approvals",
            {"operation": "env.export", "target": "web/production",
             "reason": "disaster-recovery drill"},
        )  # fmt: skip
        self.call("carol", "POST", f"/approvals/{approval['id']}/approve", {})
        self.call(
            "alice",
            "GET",
            "/projects/web/environments/production/export",
            approval=approval["id"],
            reason="disaster-recovery drill",
        )
        self.note("web/production exported with a second approver")

    def rotate_project_key(self) -> None:
        """Rotates the data key of project web to the end."""
        self.call("owner", "POST", "/projects/web/key-rotation")
        while not self.call("owner", "POST", "/projects/web/key-rotation/steps", {})["done"]:
            pass
        self.note("data key of web rotated")

    def retire_bootstrap_token(self) -> None:
        """Revokes the bootstrap token now that the owner has a key of their own."""
        tokens = self.call("owner", "GET", "/tokens", all="true")["tokens"]
        for token in tokens:
            if token["kind"] == "boot":
                self.call("owner", "DELETE", f"/tokens/{token['id']}")
        self.note("bootstrap token revoked; the owner works with their own API key")

    def review(self) -> None:
        """A quarterly access review: everyone kept, then signed off."""
        month = time.gmtime(self.clock.now).tm_mon
        quarter = f"Q{(month - 1) // 3 + 1} {time.gmtime(self.clock.now).tm_year}"
        review = self.call("owner", "POST", "/access-reviews", {"name": f"{quarter} access review"})
        for item in review["items"]:
            if not item["exists"]:
                continue
            reviewer = "alice" if item["identity_name"] != PEOPLE["alice"][0] else "carol"
            self.call(
                reviewer,
                "POST",
                f"/access-reviews/{review['id']}/items/{item['identity_id']}",
                {"decision": "keep", "note": "still needed"},
            )
        self.call("owner", "POST", f"/access-reviews/{review['id']}/sign-off")
        self.note("access review signed off")

    def offboard_contractor(self) -> None:
        """The contractor's engagement ends: offboarded, and what they could read rotated."""
        answer = self.call("alice", "POST", f"/members/{PEOPLE['dave'][0]}/offboard")
        for flagged in answer["flagged"]:
            project, env, key = flagged["project"], flagged["environment"], flagged["key"]
            if (project, env, key) != LEFT_OVERDUE:
                self.write("alice", project, env, key, "rotated after offboarding")
        self.note(f"contractor offboarded; {answer['secrets_flagged']} secrets flagged")


def seed_demo(directory: Path, *, months: int = 4) -> DemoResult:
    """Initialises a new vault in ``directory`` and plays the demo story over the last
    ``months`` months (1..12). Raises Conflict when ``directory`` already holds a vault,
    RuntimeError naming the step when the story cannot go on."""
    from coffer.api.app import create_app
    from coffer.bootstrap import build_services, initialise_vault
    from coffer.config import Settings

    start = time.time() - months * 30 * DAY
    clock = DemoClock(start)
    settings = Settings.from_env(directory=directory)
    with simulated_time(clock):
        init = initialise_vault(
            settings, ORG, owner_email=PEOPLE["owner"][0], owner_password=PASSWORD
        )
        services = build_services(settings)
        try:
            app = create_app(services, max_body_bytes=settings.max_body_bytes)
            with TestClient(
                app, base_url="http://127.0.0.1", client=("127.0.0.1", 50000)
            ) as client:
                story = DemoStory(client, clock, init.token)
                _play(story, clock, months)
        finally:
            services.close()
    return DemoResult(
        owner_email=PEOPLE["owner"][0],
        owner_key=story.keys["owner"],
        started_at=start,
        events=story.events,
    )


def _play(story: DemoStory, clock: DemoClock, months: int) -> None:
    story.login("owner")
    story.enrol_mfa("owner")
    story.retire_bootstrap_token()
    for name in ("alice", "carol", "bob", "dave"):
        story.person_joins(name)
    story.note("olivia (owner), alice and carol (admins, MFA), bob and dave (viewers) joined")
    story.create_secrets()
    story.machine_reads()
    days = months * 30
    landmarks: dict[int, Callable[[], None]] = {
        20: story.access_requests,
        35: story.leak_and_fix,
        50: story.approved_export,
        days - 30: story.rotate_project_key,
        days - 20: story.review,
        days - 10: story.offboard_contractor,
    }
    for day in range(1, days):
        clock.advance(1)
        if day % 7 == 0:
            story.deploy_read()
        story.rotate_due(day)
        step = landmarks.get(day)
        if step is not None:
            step()

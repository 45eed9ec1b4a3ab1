"""The organization the authorization matrix runs against, built once per backend.

Organization ``acme`` has projects ``app`` and ``billing`` (secrets in every environment) and
these callers, each named by the matrix:

* ``owner``, ``admin``, ``viewer``: people with that role;
* ``dev``: a viewer with grants ``app:development:write`` and ``app:production:none``;
* ``lapsed``: a viewer whose grants (``app:development:write``, ``app:production:none``) expired;
* ``deploy``: a machine scoped ``app:production:read``;
* ``temp``: a machine scoped ``app:staging:read`` whose grant ``app:production:read`` expired;
* ``fenced``: a machine scoped ``app:production:read`` allowed only from 10.0.0.0/8 (the test
  client connects from 203.0.113.10);
* ``revoked``, ``expired``: a viewer's revoked CLI token and expired API key; ``anonymous``;
* ``rival``: the owner of a second organization, whose own project is also called ``app``.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from fastapi.testclient import TestClient

from coffer.bootstrap import build_services, initialise_vault
from coffer.config import Settings
from coffer.services.container import Services
from coffer.services.token_issuer import API_KEY, issue_token
from coffer.storage.tables import audit_log
from tests.integration.team_helpers import (
    API,
    PASSWORD,
    bearer,
    cheap_settings,
    client_for,
    create_second_org,
    join,
    login,
)

ORG = "acme"
PROJECT = "app"
FOREIGN = "billing"
ENVS = ("development", "staging", "production")
SECRET_MARK = "acme-only-value"
KEY = "db/password"
PROMO_KEY = "promo/k"

OWNER, ADMIN, VIEWER, DEV, LAPSED = "owner", "admin", "viewer", "dev", "lapsed"
DEPLOY, TEMP, FENCED = "deploy", "temp", "fenced"
REVOKED, EXPIRED, ANONYMOUS, RIVAL = "revoked", "expired", "anonymous", "rival"
BYSTANDER = "bystander@acme.test"

PEOPLE = frozenset({OWNER, ADMIN, VIEWER, DEV, LAPSED})
STAFF = frozenset({OWNER, ADMIN})
MACHINES = frozenset({DEPLOY, TEMP})
VALID = PEOPLE | MACHINES
UNAUTHENTICATED = frozenset({REVOKED, EXPIRED, ANONYMOUS})
EVERYONE = VALID | UNAUTHENTICATED | {FENCED, RIVAL}

# What a caller of the other organization names instead of acme's resource, to compare with.
MISSING = {
    "project": "nosuchproj",
    "machine": "nosuchmachine",
    "member": "nosuchmember@acme.test",
    "grant": "01NOSUCHGRANT0000000000000",
    "token": "01NOSUCHTOKEN0000000000000",
    "org": "nosuchorg",
    "entry": "01NOSUCHENTRY0000000000000",
    "webhook": "01NOSUCHWEBHOOK00000000000",
    "ephemeral": "nosuch/ephemeral",
    "policy": "nosuchpolicy",
    "request": "01MATRXREQ0000000000000000",
    "approval": "01MATRXAPPR000000000000000",
    "review": "01MATRXREV0000000000000000",
}
GRANT_SECONDS = 2.0


def secret_url(project: str, environment: str, key: str = KEY) -> str:
    """The URL of a secret."""
    return f"{API}/projects/{project}/environments/{environment}/secrets/{key}"


def readers(environment: str) -> frozenset[str]:
    """Who may read secrets of ``app``'s environment."""
    people = PEOPLE - {DEV} if environment == "production" else PEOPLE
    machines = {"production": {DEPLOY}, "staging": {TEMP}}.get(environment, set())
    return people | machines


def writers(environment: str) -> frozenset[str]:
    """Who may write secrets of ``app``'s environment."""
    return STAFF | {DEV} if environment == "development" else STAFF


@dataclass
class Identity:
    """One caller of the matrix."""

    name: str
    token: str | None
    kind: str  # "user", "machine" or "none"
    id: str = ""
    email: str = ""
    domain: str = "acme.test"


_UNSET: Any = object()


@dataclass
class Call:
    """One request a builder prepares; ``after`` runs once the answer is in (clean-up)."""

    method: str
    url: str
    json: Any = None
    params: Mapping[str, str] | None = None
    token: Any = _UNSET
    after: Callable[[httpx.Response], None] | None = None


@dataclass
class Target:
    """Where a builder's request points: acme's project ``home``, or (``missing``) names
    that exist nowhere. ``names`` records every name used, to compare answers."""

    home: str
    missing: bool = False
    names: dict[str, str] = field(default_factory=dict)

    def pick(self, role: str, actual: str) -> str:
        """Returns ``actual``, or the nonexistent name for ``role`` when ``missing``."""
        value = MISSING[role] if self.missing else actual
        self.names[role] = value
        return value

    def project(self) -> str:
        """The project to address."""
        return self.pick("project", self.home)


@dataclass
class World:
    """The running app, its organizations and callers."""

    client: TestClient
    services: Services
    settings: Settings
    who: dict[str, Identity] = field(default_factory=dict)
    org_id: str = ""
    markers: list[str] = field(default_factory=list)
    counter: Iterator[int] = field(default_factory=itertools.count)
    cache: dict[str, str] = field(default_factory=dict)  # what builders make once, by name

    def unique(self, prefix: str) -> str:
        """A name not used before."""
        return f"{prefix}-{next(self.counter)}"

    def send(self, call: Call, identity: Identity) -> httpx.Response:
        """Sends ``call`` with the identity's token (or the call's own)."""
        token = identity.token if call.token is _UNSET else call.token
        return self.client.request(
            call.method, call.url, json=call.json, params=call.params, headers=bearer(token)
        )

    def as_owner(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """A request by acme's owner, asserted to succeed."""
        return self.as_(self.who[OWNER].token, method, url, **kwargs)

    def as_(self, token: str | None, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """A request with ``token``, asserted to succeed."""
        response = self.client.request(method, url, headers=bearer(token), **kwargs)
        assert response.is_success, f"{method} {url}: {response.text}"
        return response

    def fresh_token(self, identity: Identity) -> tuple[str | None, str]:
        """A new token of the identity and its id (its own token for dead ones)."""
        if identity.kind == "user":
            body = login(self.client, identity.email)
            return body["token"], body["id"]
        if identity.kind == "machine":
            body = self.as_owner("POST", f"{API}/machines/{identity.name}/tokens", json={}).json()
            return body["token"], body["id"]
        return identity.token, MISSING["token"]

    def last_seq(self) -> int:
        """The newest audit entry's sequence number."""
        with self.services.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.max(audit_log.c.seq))).scalar_one() or 0)

    def entries_after(self, seq: int) -> list[tuple[str, str | None]]:
        """(action, actor id) of the audit entries after ``seq``."""
        with self.services.engine.connect() as conn:
            rows = conn.execute(
                sa.select(audit_log.c.action, audit_log.c.actor_id)
                .where(audit_log.c.seq > seq)
                .order_by(audit_log.c.seq)
            )
            return [(row[0], row[1]) for row in rows]


def _whoami(world: World, token: str | None) -> dict[str, Any]:
    body: dict[str, Any] = world.as_(token, "GET", f"{API}/whoami").json()
    return body


def _person(world: World, name: str, role: str) -> Identity:
    email = f"{name}@acme.test"
    join(world.client, world.who[OWNER].token or "", email, role)
    token = login(world.client, email)["token"]
    return Identity(name, token, "user", _whoami(world, token)["id"], email)


def _machine(world: World, name: str, scopes: list[str], **extra: Any) -> Identity:
    world.as_owner("POST", f"{API}/machines", json={"name": name, "scopes": scopes, **extra})
    token, _ = world.fresh_token(Identity(name, None, "machine"))
    machine_id = world.as_owner("GET", f"{API}/machines").json()["machines"]
    found = next(m["id"] for m in machine_id if m["name"] == name)
    return Identity(name, token, "machine", found)


def _grant(
    world: World, *, member: str | None = None, machine: str | None = None, **rest: Any
) -> None:
    body = {"member": member, "machine": machine, **rest}
    world.as_owner("POST", f"{API}/grants", json=body)


def _fill(world: World, token: str | None, project: str, mark: str, key: str = KEY) -> None:
    world.as_(token, "POST", f"{API}/projects", json={"name": project})
    for env in ENVS:
        value = f"{mark}-{project}-{env}"
        world.as_(token, "PUT", secret_url(project, env, key), json={"value": value})
    for env in ("staging", "production"):
        world.as_(token, "PUT", secret_url(project, env, PROMO_KEY), json={"value": f"{mark}-p"})


def _expired_key(world: World, viewer: Identity) -> str:
    now = time.time()
    with world.services.engine.begin() as conn:
        issued = issue_token(
            conn,
            org_id=world.org_id,
            kind=API_KEY,
            name="expired key",
            identity_id=viewer.id,
            identity_kind="user",
            now=now - 120,
            expires_at=now - 60,
        )
    return issued.token


def _expiring_grants(world: World) -> float:
    """Gives ``lapsed`` and ``temp`` grants that expire soon, checks they work now, and
    returns when they expire."""
    until = time.time() + GRANT_SECONDS
    for scope in ("app:development:write", "app:production:none"):
        _grant(world, member="lapsed@acme.test", scope=scope, expires_in=f"{int(GRANT_SECONDS)}s")
    _grant(world, machine=TEMP, scope="app:production:read", expires_in=f"{int(GRANT_SECONDS)}s")
    lapsed, temp = world.who[LAPSED].token, world.who[TEMP].token
    world.as_(lapsed, "PUT", secret_url(PROJECT, "development", "lapsed/k"), json={"value": "v"})
    hidden = world.client.get(secret_url(PROJECT, "production"), headers=bearer(lapsed))
    assert hidden.status_code == 403, hidden.text
    world.as_(temp, "GET", secret_url(PROJECT, "production"))
    return until


def build_world(client: TestClient, services: Services, settings: Settings) -> World:
    """Builds both organizations and every caller; returns once the expiring grants expired."""
    world = World(client=client, services=services, settings=settings)
    owner_token = login(client, "owner@acme.test")["token"]
    owner = _whoami(world, owner_token)
    world.org_id = owner["org_id"]
    world.who[OWNER] = Identity(OWNER, owner_token, "user", owner["id"], "owner@acme.test")
    for project in (PROJECT, FOREIGN):
        _fill(world, owner_token, project, SECRET_MARK)
    for name, role in ((ADMIN, "admin"), (VIEWER, "viewer"), (DEV, "viewer"), (LAPSED, "viewer")):
        world.who[name] = _person(world, name, role)
    world.who[TEMP] = _machine(world, TEMP, ["app:staging:read"])
    until = _expiring_grants(world)
    _grant(world, member="dev@acme.test", scope="app:development:write")
    _grant(world, member="dev@acme.test", scope="app:production:none")
    world.who[DEPLOY] = _machine(world, DEPLOY, ["app:production:read"])
    world.who[FENCED] = _machine(world, FENCED, ["app:production:read"], allowed_ips=["10.0.0.0/8"])
    join(client, owner_token, BYSTANDER, "viewer")
    viewer = world.who[VIEWER]
    spare = login(client, viewer.email)
    world.as_(viewer.token, "DELETE", f"{API}/tokens/{spare['id']}")
    world.who[REVOKED] = Identity(REVOKED, spare["token"], "none")
    world.who[EXPIRED] = Identity(EXPIRED, _expired_key(world, viewer), "none")
    world.who[ANONYMOUS] = Identity(ANONYMOUS, None, "none")
    create_second_org(services, settings, "rival", "owner@rival.test")
    rival_token = login(client, "owner@rival.test")["token"]
    world.who[RIVAL] = Identity(
        RIVAL,
        rival_token,
        "user",
        _whoami(world, rival_token)["id"],
        "owner@rival.test",
        "rival.test",
    )
    _fill(world, rival_token, PROJECT, "rival-value", key="rival/only")
    world.markers = [
        world.org_id,
        FOREIGN,
        "@acme.test",
        SECRET_MARK,
        *(i.id for i in world.who.values() if i.id and i.name != RIVAL),
    ]
    time.sleep(max(0.0, until - time.time() + 0.2))
    return world


def open_world(database_url: str, directory: Path) -> Iterator[World]:
    """Initialises acme's vault on ``database_url`` and yields the built world."""
    settings = cheap_settings(
        database_url,
        directory,
        login_rate_limit="off",
        rate_limit_ip="off",
        rate_limit_identity="off",
        outbound_allow=("127.0.0.1",),
    )
    initialise_vault(settings, ORG, owner_email="owner@acme.test", owner_password=PASSWORD)
    services = build_services(settings)
    try:
        with client_for(services, settings) as client:
            yield build_world(client, services, settings)
    finally:
        services.close()

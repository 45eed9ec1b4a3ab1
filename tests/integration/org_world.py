"""acme served over HTTP for a test module: its owner, members, a machine and the owner of a
second organization (``rival``), each with a token, on a server whose pruner never runs."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from fastapi.testclient import TestClient

from coffer.bootstrap import build_services, initialise_vault
from coffer.services.container import Services
from tests.integration.team_helpers import (
    API,
    OWNER_EMAIL,
    PASSWORD,
    bearer,
    cheap_settings,
    client_for,
    create_second_org,
    login,
    member_token,
)


@dataclass
class OrgWorld:
    """The served organization and the tokens and ids of its callers, by name."""

    client: TestClient
    services: Services
    tokens: dict[str, str] = field(default_factory=dict)
    ids: dict[str, str] = field(default_factory=dict)
    counter: Iterator[int] = field(default_factory=itertools.count)

    def name(self, prefix: str) -> str:
        """A key no other test of the module uses."""
        return f"{prefix}/n{next(self.counter)}"

    def call(self, who: str | None, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """A request with ``who``'s token (none for None)."""
        token = self.tokens[who] if who else None
        response: httpx.Response = self.client.request(method, url, headers=bearer(token), **kwargs)
        return response


@contextmanager
def served_org(
    database_url: str, directory: Path, members: Mapping[str, str] | None = None
) -> Iterator[OrgWorld]:
    """acme with its owner, ``members`` (name -> role, e-mail ``<name>@acme.test``), the
    project ``app``, the machine ``robot`` (``app:read``) and rival's owner; closed after."""
    settings = cheap_settings(
        database_url,
        directory,
        login_rate_limit="off",
        rate_limit_ip="off",
        rate_limit_identity="off",
        prune_interval=0,
    )
    initialise_vault(settings, "acme", owner_email=OWNER_EMAIL, owner_password=PASSWORD)
    services = build_services(settings)
    try:
        with client_for(services, settings) as client:
            world = OrgWorld(client, services)
            world.tokens["owner"] = login(client, OWNER_EMAIL)["token"]
            owner = world.tokens["owner"]
            for name, role in (members or {}).items():
                world.tokens[name] = member_token(client, owner, f"{name}@acme.test", role)
            world.call("owner", "POST", f"{API}/projects", json={"name": "app"})
            machine = world.call(
                "owner", "POST", f"{API}/machines", json={"name": "robot", "scopes": ["app:read"]}
            )
            assert machine.status_code == 201, machine.text
            issued = world.call("owner", "POST", f"{API}/machines/robot/tokens", json={})
            world.tokens["robot"] = issued.json()["token"]
            create_second_org(services, settings, "rival", "owner@rival.test")
            world.tokens["rival"] = login(client, "owner@rival.test")["token"]
            for who in world.tokens:
                world.ids[who] = world.call(who, "GET", f"{API}/whoami").json()["id"]
            yield world
    finally:
        services.close()

"""``GET /api/v1/compliance/status`` on SQLite and PostgreSQL: a healthy organization passes
every control, and each control, broken from live state (an admin without MFA, a stale
request, a missing review, a key that never expires, single-person export, an exposed secret,
a tampered audit row, an overdue secret, ...), fails naming what is broken.

Organization acme (``open_team``) has project ``app`` with ``db/password`` in production.
Rows of the compliance tables that other parts of issue 9 write (requests, reviews,
offboardings, flags) are put in directly, as those services would leave them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa

from coffer.crypto.totp import current_code
from coffer.domain.inventory import EnvironmentPolicy
from coffer.services.compliance import ComplianceService
from coffer.services.compliance_facts import Deployment
from coffer.storage import exposure_store, policy_store
from coffer.storage.compliance_tables import (
    access_requests,
    access_review_items,
    access_reviews,
    offboardings,
    rotation_flags,
    secret_inventory,
)
from coffer.storage.ids import new_id
from coffer.storage.tables import (
    api_tokens,
    audit_log,
    organizations,
    secret_versions,
    secrets,
    users,
    webhooks,
)
from tests.integration.team_helpers import (
    API,
    CLIENT_ADDRESS,
    OWNER_EMAIL,
    SECRET,
    Team,
    TeamFactory,
    bearer,
    member_token,
)

STATUS = f"{API}/compliance/status"
DAY = 86400.0


@dataclass
class Acme:
    """acme made healthy: every control passes until a test breaks one."""

    team: Team
    org_id: str

    @property
    def engine(self) -> sa.Engine:
        return self.team.services.engine

    def controls(self, token: str | None = None) -> dict[str, dict[str, Any]]:
        """The control table by criterion, asserting the request succeeded."""
        response = self.team.get(STATUS, token or self.team.owner)
        assert response.status_code == 200, response.text
        return {c["criterion"]: c for c in response.json()["controls"]}

    def failing(self, criterion: str) -> str:
        """The reason of ``criterion``, which must be the only failing control."""
        table = self.controls()
        assert {c for c, v in table.items() if v["status"] == "fail"} == {criterion}, table
        reason: str = table[criterion]["reason"]
        return reason

    def execute(self, statement: Any) -> None:
        """Runs one statement in its own transaction."""
        with self.engine.begin() as conn:
            conn.execute(statement)

    def user_id(self, email: str) -> str:
        with self.engine.connect() as conn:
            found: str = conn.execute(
                sa.select(users.c.id).where(users.c.email == email)
            ).scalar_one()
        return found

    def secret_id(self) -> str:
        with self.engine.connect() as conn:
            found: str = conn.execute(
                sa.select(secrets.c.id).where(secrets.c.key == "db/password")
            ).scalar_one()
        return found

    def review(self, signed_off_at: float | None, *items: dict[str, Any]) -> str:
        """Puts in an access review (signed off at ``signed_off_at``) with ``items``."""
        review_id = new_id()
        now = time.time()
        self.execute(
            sa.insert(access_reviews).values(
                id=review_id,
                org_id=self.org_id,
                name=f"review {review_id[-4:]}",
                status="signed_off" if signed_off_at else "open",
                created_by=self.user_id(OWNER_EMAIL),
                created_at=now - DAY,
                signed_off_by=self.user_id(OWNER_EMAIL) if signed_off_at else None,
                signed_off_at=signed_off_at,
                digest="ab" * 32 if signed_off_at else None,
            )
        )
        for item in items:
            self.execute(
                sa.insert(access_review_items).values(
                    review_id=review_id, access=[], decided_at=now, **item
                )
            )
        return review_id


def enrol_mfa(team: Team, token: str) -> None:
    """Enables MFA for the holder of ``token`` over the API."""
    setup = team.client.post(f"{API}/mfa/setup", headers=bearer(token))
    assert setup.status_code == 200, setup.text
    code = current_code(setup.json()["secret"])
    enabled = team.client.post(f"{API}/mfa/enable", json={"code": code}, headers=bearer(token))
    assert enabled.status_code == 200, enabled.text


@pytest.fixture
def acme(open_team: TeamFactory) -> Acme:
    """acme with every control passing: the owner enrolled in MFA, the bootstrap token
    revoked, a review signed off yesterday, a webhook, two-person export of production,
    and TLS at a trusted proxy."""
    team = open_team(trusted_proxies=("10.0.0.0/8",), outbound_allow=("127.0.0.1",))
    enrol_mfa(team, team.owner)
    with team.services.engine.begin() as conn:
        org_id = conn.execute(
            sa.select(organizations.c.id).where(organizations.c.name == "acme")
        ).scalar_one()
        conn.execute(
            sa.update(api_tokens).where(api_tokens.c.kind == "boot").values(revoked_at=time.time())
        )
        policy_store.save_policy(
            conn,
            org_id,
            EnvironmentPolicy("production", export_approvals=2),
            by="test",
            now=time.time(),
        )
    hook = team.client.post(
        f"{API}/webhooks",
        json={"url": "http://127.0.0.1:9/hook", "events": ["anomaly.*"]},
        headers=bearer(team.owner),
    )
    assert hook.status_code == 201, hook.text
    world = Acme(team, org_id)
    world.review(time.time() - DAY)
    return world


def test_a_healthy_organization_passes_every_control(acme: Acme) -> None:
    """Every control passes, each says what it found, and the table's shape is complete;
    a viewer is refused (403) and an anonymous caller unauthenticated (401)."""
    response = acme.team.get(STATUS, acme.team.owner)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["organization"] == "acme"
    assert body["summary"] == {
        "controls": 8,
        "passing": 8,
        "failing": 0,
        "failing_ids": [],
        "all_pass": True,
    }
    first = body["controls"][0]
    assert set(first) == {
        "id",
        "criterion",
        "title",
        "checks",
        "status",
        "reason",
        "failures",
        "evidence",
    }
    table = {c["criterion"]: c for c in body["controls"]}
    assert "Every owner and admin (1) has MFA enrolled" in table["CC6.1"]["reason"]
    assert "1 active webhook" in table["CC7.2"]["reason"]
    assert "Exporting production whole needs a second approver" in table["CC6.7"]["reason"]
    viewer = member_token(acme.team.client, acme.team.owner, "val@acme.test", "viewer")
    assert acme.team.get(STATUS, viewer).status_code == 403
    assert acme.team.get(STATUS, None).status_code == 401


def test_cc61_names_an_admin_without_mfa_and_a_version_without_its_data_key(acme: Acme) -> None:
    """A new admin who has not enrolled fails CC6.1 by name; so does a version whose data
    key version does not exist."""
    member_token(acme.team.client, acme.team.owner, "ada@acme.test", "admin")
    assert "ada@acme.test" in acme.failing("CC6.1")
    acme.execute(sa.update(organizations).values(require_mfa=True))
    assert acme.controls()["CC6.1"]["status"] == "pass"
    acme.execute(sa.update(secret_versions).values(key_version=99))
    assert "app/production/db/password v1" in acme.failing("CC6.1")


def test_cc62_names_a_stale_request_a_permanent_grant_and_a_self_approval(acme: Acme) -> None:
    """A request left undecided for 8 days, a permanent grant given without a request, and a
    request approved by its requester each fail CC6.2; a grant that expires does not."""
    member_token(acme.team.client, acme.team.owner, "bea@acme.test", "viewer")
    bea = acme.user_id("bea@acme.test")
    grant = {"member": "bea@acme.test", "scope": "app:production:write"}
    timed = acme.team.client.post(
        f"{API}/grants", json={**grant, "expires_in": "2h"}, headers=bearer(acme.team.owner)
    )
    assert timed.status_code == 201, timed.text
    assert acme.controls()["CC6.2"]["status"] == "pass"
    forever = acme.team.client.post(f"{API}/grants", json=grant, headers=bearer(acme.team.owner))
    assert forever.status_code == 201, forever.text
    assert "bea@acme.test: write on app/production" in acme.failing("CC6.2")
    acme.team.client.delete(f"{API}/grants/{forever.json()['id']}", headers=bearer(acme.team.owner))
    request = {
        "org_id": acme.org_id,
        "requester_id": bea,
        "requester_kind": "user",
        "project": "app",
        "environment": "production",
        "access": "read",
        "reason": "incident 42",
        "duration_seconds": 3600,
    }
    stale = new_id()
    acme.execute(
        sa.insert(access_requests).values(
            id=stale, status="pending", created_at=time.time() - 8 * DAY, **request
        )
    )
    reason = acme.failing("CC6.2")
    assert "1 access request of the period left undecided for 7 days" in reason
    assert "bea@acme.test asked for read on app/production on 20" in reason
    acme.execute(sa.delete(access_requests).where(access_requests.c.id == stale))
    own = new_id()
    acme.execute(
        sa.insert(access_requests).values(
            id=own,
            status="approved",
            created_at=time.time(),
            decided_by=bea,
            decided_at=time.time(),
            **request,
        )
    )
    reason = acme.failing("CC6.2")
    assert f"access request {own}" in reason and "approved by its own requester" in reason


def test_cc63_needs_a_recent_review_applied_revokes_and_offboarded_members_without_tokens(
    acme: Acme,
) -> None:
    """Without a review in the last 90 days CC6.3 fails; so does a revoke decision on a
    member who is still there, and an offboarded member who still holds a live token."""
    acme.execute(sa.delete(access_reviews))
    assert "none was ever signed off" in acme.failing("CC6.3")
    acme.review(time.time() - 100 * DAY)
    assert "was signed off" in acme.failing("CC6.3")
    owner_id = acme.user_id(OWNER_EMAIL)
    member_token(acme.team.client, acme.team.owner, "cal@acme.test", "viewer")
    cal = acme.user_id("cal@acme.test")
    line = {
        "identity_id": cal,
        "identity_kind": "user",
        "identity_name": "cal@acme.test",
        "role": "viewer",
        "decision": "revoke",
        "decided_by": owner_id,
    }
    acme.review(time.time() - DAY, line)
    assert "cal@acme.test (user) revoked in review" in acme.failing("CC6.3")
    acme.team.client.delete(f"{API}/members/cal@acme.test", headers=bearer(acme.team.owner))
    assert acme.controls()["CC6.3"]["status"] == "pass"
    token = member_token(acme.team.client, acme.team.owner, "dee@acme.test", "viewer")
    acme.execute(
        sa.insert(offboardings).values(
            id=new_id(),
            org_id=acme.org_id,
            user_id=acme.user_id("dee@acme.test"),
            email="dee@acme.test",
            offboarded_by=owner_id,
            offboarded_at=time.time(),
            summary={"tokens": 0},
        )
    )
    assert "dee@acme.test (offboarded" in acme.failing("CC6.3")
    assert acme.team.get(f"{API}/projects", token).status_code == 200  # the token is live


def test_cc66_names_a_key_that_never_expires_and_a_machine_without_allow_list(
    acme: Acme,
) -> None:
    """An API key without expiry and a machine identity without an IP allow-list each fail
    CC6.6 by name; a key with an expiry does not."""
    owner = bearer(acme.team.owner)
    timed = acme.team.client.post(
        f"{API}/keys", json={"name": "ci", "expires_in": "30d"}, headers=owner
    )
    assert timed.status_code == 201, timed.text
    assert acme.controls()["CC6.6"]["status"] == "pass"
    forever = acme.team.client.post(f"{API}/keys", json={"name": "forever"}, headers=owner)
    assert forever.status_code == 201, forever.text
    assert f"API key 'forever' of {OWNER_EMAIL}" in acme.failing("CC6.6")
    acme.team.client.delete(f"{API}/keys/{forever.json()['id']}", headers=owner)
    machine = acme.team.client.post(
        f"{API}/machines", json={"name": "billing", "scopes": ["app:read"]}, headers=owner
    )
    assert machine.status_code == 201, machine.text
    assert "without an IP allow-list: billing" in acme.failing("CC6.6")


def test_cc67_fails_on_single_person_export_and_on_plain_http(open_team: TeamFactory) -> None:
    """A production environment exportable by one person, and a server on plain HTTP with
    no trusted proxy, each fail CC6.7."""
    team = open_team()
    table = {c["criterion"]: c for c in team.get(STATUS, team.owner).json()["controls"]}
    reason = table["CC6.7"]["reason"]
    assert table["CC6.7"]["status"] == "fail"
    assert "production (export_approvals 1)" in reason
    assert "plain HTTP (COFFER_TLS_CERT unset)" in reason


def test_cc71_fails_while_an_exposed_version_is_current(acme: Acme) -> None:
    """A scanner match of the current version fails CC7.1 with where it was found; writing
    a new version resolves it."""
    secret_id = acme.secret_id()
    with acme.engine.begin() as conn:
        exposure_store.record_exposure(
            conn,
            secret_id=secret_id,
            version=1,
            rule_id="generic-password",
            location="src/settings.py:12",
            reported_by=None,
            reported_by_kind="user",
            now=time.time(),
        )
    assert "app/production/db/password v1 found at src/settings.py:12" in acme.failing("CC7.1")
    written = acme.team.client.put(
        SECRET, json={"value": "rotated-value"}, headers=bearer(acme.team.owner)
    )
    assert written.status_code in (200, 201), written.text
    table = acme.controls()
    assert table["CC7.1"]["status"] == "pass"
    assert "every exposed secret was rotated" in table["CC7.1"]["reason"]


def test_cc72_fails_on_a_tampered_audit_row(acme: Acme) -> None:
    """An audit entry changed in the database fails CC7.2, naming the entry."""
    acme.controls()  # seals and signs what is there
    with acme.engine.begin() as conn:
        seq, entry_id = conn.execute(
            sa.select(audit_log.c.seq, audit_log.c.id)
            .where(audit_log.c.action == "secret.created", audit_log.c.leaf_index.is_not(None))
            .limit(1)
        ).one()
        conn.execute(sa.update(audit_log).where(audit_log.c.seq == seq).values(key="db/renamed"))
    reason = acme.failing("CC7.2")
    assert "The audit log does not verify" in reason and entry_id in reason


def test_cc72_fails_when_entries_wait_for_a_checkpoint_and_when_no_one_is_alerted(
    acme: Acme,
) -> None:
    """Two hours after the last entry with no checkpoint since, CC7.2 fails; with no
    webhook and no SIEM stream it fails too."""
    services = acme.team.services
    later = ComplianceService(
        services.engine,
        audit_writer(acme),
        services.audit,
        services.gate,
        Deployment(trusted_proxies=1),
        clock=lambda: time.time() + 2 * 3600,
    )
    acme.team.client.put(SECRET, json={"value": "v2-value"}, headers=bearer(acme.team.owner))
    ctx = owner_context(acme)
    table = {r.control.criterion: r for r in later.status(ctx).results}
    assert table["CC7.2"].status.value == "fail"
    assert "An audit entry has waited 2.0 hours for a signed checkpoint" in table["CC7.2"].reason
    silent = ComplianceService(
        services.engine, audit_writer(acme), services.audit, services.gate, Deployment()
    )
    acme.execute(sa.update(webhooks).values(active=False))
    result = {r.control.criterion: r for r in silent.status(ctx).results}["CC7.2"]
    assert "No one is alerted" in result.reason


def test_cc81_names_overdue_flagged_breaking_and_authorless_secrets(acme: Acme) -> None:
    """A secret past its rotation period, one flagged at offboarding, one breaking its
    environment's policy and a version without author each fail CC8.1 by name."""
    sid = acme.secret_id()
    acme.execute(
        sa.insert(secret_inventory).values(
            secret_id=sid,
            owner="team-db",
            rotation_days=30,
            updated_at=time.time(),
            updated_by="test",
        )
    )
    acme.execute(sa.update(secret_versions).values(created_at=time.time() - 40 * DAY))
    assert "app/production/db/password (due" in acme.failing("CC8.1")
    acme.execute(sa.update(secret_versions).values(created_at=time.time()))
    acme.execute(
        sa.insert(rotation_flags).values(
            id=new_id(),
            secret_id=sid,
            version=1,
            reason="offboarding",
            detail="eve@acme.test left",
            flagged_at=time.time(),
        )
    )
    assert "offboarding: eve@acme.test left" in acme.failing("CC8.1")
    acme.execute(sa.delete(rotation_flags))
    with acme.engine.begin() as conn:
        policy_store.save_policy(
            conn,
            acme.org_id,
            EnvironmentPolicy("production", required_fields=("system",), export_approvals=2),
            by="test",
            now=time.time(),
        )
    assert "app/production/db/password: production requires system" in acme.failing("CC8.1")
    acme.execute(sa.update(secret_inventory).values(system="postgres"))
    acme.execute(sa.update(secret_versions).values(author_id=""))
    assert "without an author: app/production/db/password v1" in acme.failing("CC8.1")


# --- helpers needing the vault's keys -------------------------------------------------------


def audit_writer(acme: Acme) -> Any:
    """An audit writer with the vault's keys (as bootstrap builds it)."""
    from coffer.audit.writer import AuditWriter
    from coffer.bootstrap import audit_keys_for, load_settings_root_key

    return AuditWriter(audit_keys_for(load_settings_root_key(acme.team.settings)))


def owner_context(acme: Acme) -> Any:
    """The call context of acme's owner."""
    from coffer.domain.models import CallContext

    actor = acme.team.services.auth.authenticate(acme.team.owner)
    return CallContext(actor=actor, source_ip=CLIENT_ADDRESS, user_agent="pytest")

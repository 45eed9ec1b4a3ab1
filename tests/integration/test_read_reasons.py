"""Reads that must state a reason, over the HTTP API on every backend: where acme's policy
for production says so, every read of a value there (a plain or versioned GET, a reference
from elsewhere, an export, a promotion out of it) without a reason is refused with 403
``reason_required`` and counts nothing; with one, its audit entries carry the reason. The
hot path never answers such a read, even from its cache after the policy changed.
Metadata-only calls need no reason."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

from coffer.domain.inventory import EnvironmentPolicy
from coffer.storage import policy_store
from tests.integration.api_helpers import audit_entries, last_audit_seq
from tests.integration.request_helpers import (
    VALUE,
    People,
    export_url,
    new_project,
    people_on,
    secret_url,
    set_policy,
)
from tests.integration.team_helpers import API

WHY = "incident 4711: checking the replica's password"


@pytest.fixture(scope="module")
def people(module_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[People]:
    """acme whose production reads must state a reason; on PostgreSQL the node's caches
    get Redis for their invalidation (so the hot path caches there too)."""
    redis_url = os.environ.get("COFFER_TEST_REDIS_URL")
    overrides: dict[str, Any] = {}
    if not module_database_url.startswith("sqlite"):
        if not redis_url:
            if os.environ.get("CI"):
                pytest.fail("CI must run the Redis tests: set COFFER_TEST_REDIS_URL")
            pytest.skip("the hot path's cache on PostgreSQL needs COFFER_TEST_REDIS_URL")
        overrides["redis_url"] = redis_url
    directory = tmp_path_factory.mktemp("reasons")
    with people_on(module_database_url, directory, **overrides) as found:
        set_policy(found, require_read_reason=True)
        yield found


@pytest.fixture
def project(people: People) -> str:
    """A project of this test's own."""
    return new_project(people)


def reason_refused(answer: Any) -> None:
    """Asserts 403 ``reason_required`` telling the user to pass --reason."""
    assert answer.status_code == 403, answer.text
    error = answer.json()["error"]
    assert (error["code"], error["field"]) == ("reason_required", "reason")
    assert "must state a reason: pass --reason" in error["message"]


def reads_with(people: People, after: int) -> list[tuple[str, str | None, Any]]:
    """(action, environment, stated reason) of the audit entries after ``after``."""
    return [
        (e["action"], e["environment"], e["metadata"].get("reason"))
        for e in audit_entries(people.team.services.engine, after)
    ]


def test_a_production_read_needs_a_reason_which_the_log_keeps(people: People, project: str) -> None:
    """Without a reason 403 (logged as access.denied); with one 200 and ``secret.read``
    carries it; staging needs none."""
    production = secret_url(project, "production")
    seq = last_audit_seq(people.team.services.engine)
    reason_refused(people.get(production, people.vic, params={"expand": "false"}))
    assert [(a, e) for a, e, _ in reads_with(people, seq)] == [("access.denied", "production")]

    seq = last_audit_seq(people.team.services.engine)
    answer = people.get(production, people.vic, params={"reason": f"  {WHY} "})

    assert (answer.status_code, answer.json()["value"]) == (200, VALUE)
    assert reads_with(people, seq) == [("secret.read", "production", WHY)]
    staging = people.get(secret_url(project, "staging"), people.vic)
    assert staging.status_code == 200


def test_the_hot_path_does_not_answer_a_plain_read(people: People, project: str) -> None:
    """A plain GET with a bearer token (no query string: the hot path's case) is refused
    too, for a CLI token and for the owner alike."""
    production = secret_url(project, "production")
    for token in (people.vic, people.owner, people.vic):
        reason_refused(people.get(production, token))


def test_a_new_policy_reaches_the_hot_paths_cache(people: People, project: str) -> None:
    """Plain reads of staging are served (and cached); once staging's policy wants a
    reason, the next plain read is refused; removing the policy serves it again."""
    staging = secret_url(project, "staging")
    for _ in range(2):
        assert people.get(staging, people.vic).status_code == 200
    policy = EnvironmentPolicy(environment="staging", require_read_reason=True)
    engine = people.team.services.engine
    with engine.begin() as conn:
        policy_store.save_policy(conn, people.org_id, policy, by="test", now=time.time())
    try:
        reason_refused(people.get(staging, people.vic))
        assert people.get(staging, people.vic, params={"reason": WHY}).status_code == 200
    finally:
        with engine.begin() as conn:
            policy_store.delete_policy(conn, people.org_id, "staging")
    assert people.get(staging, people.vic).status_code == 200


def test_metadata_needs_no_reason(people: People, project: str) -> None:
    """Listing keys, HEAD and the version history answer without a reason."""
    environment = f"{API}/projects/{project}/environments/production"
    assert people.get(f"{environment}/secrets", people.vic).status_code == 200
    head = people.team.client.head(
        secret_url(project, "production"), headers={"Authorization": f"Bearer {people.vic}"}
    )
    assert head.status_code == 200
    assert people.get(f"{environment}/history/db/password", people.vic).status_code == 200


def test_an_old_version_and_a_limited_secret_need_a_reason_and_count_nothing_without(
    people: People, project: str
) -> None:
    """A versioned read is refused without a reason; a secret with one read left is not
    counted by the refused read, and burns on the read that states a reason."""
    production = secret_url(project, "production")
    reason_refused(people.get(production, people.vic, params={"version": 1}))
    once = secret_url(project, "production", "once")
    written = people.put(once, people.owner, {"value": "one-time", "max_reads": 1})
    assert written.status_code == 200, written.text
    reason_refused(people.get(once, people.vic, params={"expand": "false"}))
    head = people.team.client.head(once, headers={"Authorization": f"Bearer {people.vic}"})
    assert head.headers["x-coffer-reads-remaining"] == "1"
    burned = people.get(once, people.vic, params={"reason": WHY})
    assert (burned.status_code, burned.json()["value"]) == (200, "one-time")
    assert people.get(once, people.vic, params={"reason": WHY}).status_code == 404


def test_a_reference_into_production_needs_a_reason(people: People, project: str) -> None:
    """A staging secret that expands a production one is refused without a reason; with
    one, both reads carry it."""
    url = secret_url(project, "staging", "url")
    written = people.put(url, people.owner, {"value": "pg://app:${production.db/password}@db"})
    assert written.status_code == 200, written.text
    assert people.get(url, people.vic).json()["value"].startswith("pg://app:${")
    reason_refused(people.get(url, people.vic, params={"expand": "true"}))
    seq = last_audit_seq(people.team.services.engine)
    answer = people.get(url, people.vic, params={"expand": "true", "reason": WHY})
    assert (answer.status_code, answer.json()["value"]) == (200, f"pg://app:{VALUE}@db")
    assert sorted(reads_with(people, seq)) == [
        ("secret.read", "production", WHY),
        ("secret.read", "staging", WHY),
    ]


def test_an_export_or_a_promotion_out_of_production_needs_a_reason(
    people: People, project: str
) -> None:
    """``coffer export`` and ``coffer run`` fetch the export: refused without a reason,
    each read logged with it otherwise; a promotion out of production likewise."""
    reason_refused(people.get(export_url(project), people.vic, params={"format": "json"}))
    seq = last_audit_seq(people.team.services.engine)
    answer = people.get(export_url(project), people.vic, params={"format": "json", "reason": WHY})
    assert (answer.status_code, answer.json()) == (200, {"db/password": VALUE})
    assert reads_with(people, seq) == [("secret.read", "production", WHY)]
    promote = f"{API}/projects/{project}/promote"
    body = {"from": "production", "to": "development"}
    reason_refused(people.post(promote, people.owner, body))
    done = people.post(promote, people.owner, body, params={"reason": WHY})
    assert (done.status_code, done.json()["created"]) == (200, ["db/password"])


@pytest.mark.parametrize("reason", ["", "   ", "x" * 501, "two\nlines", "nul\x00"])
def test_a_bad_reason_is_refused_naming_it(people: People, project: str, reason: str) -> None:
    """An empty, blank, too long or control-character reason is 400 naming ``reason``,
    wherever it is sent, and reads nothing."""
    seq = last_audit_seq(people.team.services.engine)
    for url in (secret_url(project, "production"), secret_url(project, "staging")):
        answer = people.get(url, people.vic, params={"reason": reason})
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"]["field"] == "reason"
    assert reads_with(people, seq) == []

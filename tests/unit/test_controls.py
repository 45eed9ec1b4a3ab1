"""The SOC 2 controls evaluated from facts: each control passes on healthy facts and fails,
naming what fails, when any one of its checks is broken."""

from __future__ import annotations

from dataclasses import replace

import pytest

from coffer.domain import control_checks
from coffer.domain.control_facts import (
    AuthorisationFacts,
    ChangeFacts,
    ControlFacts,
    DataMovementFacts,
    DetectionFacts,
    ExternalAccessFacts,
    LogicalAccessFacts,
    MonitoringFacts,
    RemovalFacts,
)
from coffer.domain.controls import ControlResult, ControlStatus, controls, evaluate, summary
from coffer.domain.evidence import DAY

NOW = 1_780_000_000.0  # 2026-05-28
CRITERIA = ("CC6.1", "CC6.2", "CC6.3", "CC6.6", "CC6.7", "CC7.1", "CC7.2", "CC8.1")


def healthy() -> ControlFacts:
    """Facts on which every control passes."""
    return ControlFacts(
        now=NOW,
        period_start=NOW - 90 * DAY,
        period_end=NOW,
        logical_access=LogicalAccessFacts(secret_versions=12, admins=2),
        authorisation=AuthorisationFacts(grants_in_period=3, requests_approved=2),
        removal=RemovalFacts(last_review="Q2 review", last_signed_off_at=NOW - 30 * DAY),
        external_access=ExternalAccessFacts(live_tokens=4, machines=1),
        data_movement=DataMovementFacts(export_approvals=(("production", 2),), tls=True),
        detection=DetectionFacts(),
        monitoring=MonitoringFacts(entries=100, last_checkpoint_at=NOW - 60, active_webhooks=1),
        change=ChangeFacts(secrets=5, versions=12),
    )


def result_of(facts: ControlFacts, criterion: str) -> ControlResult:
    """The result of the control for ``criterion``."""
    return next(r for r in evaluate(facts) if r.control.criterion == criterion)


def failing(facts: ControlFacts, criterion: str) -> ControlResult:
    """The result for ``criterion``, which must fail while every other control passes."""
    results = evaluate(facts)
    for result in results:
        expected = (
            ControlStatus.FAIL if result.control.criterion == criterion else ControlStatus.PASS
        )
        assert result.status is expected, (result.control.criterion, result.reason)
    return result_of(facts, criterion)


def test_the_catalogue_maps_one_control_to_each_criterion() -> None:
    """The catalogue covers CC6.1 to CC8.1 in order, each naming its evidence files."""
    catalogue = controls()
    assert tuple(c.criterion for c in catalogue) == CRITERIA
    assert len({c.id for c in catalogue}) == len(catalogue)
    assert all(c.evidence and c.checks and c.title for c in catalogue)


def test_healthy_facts_pass_every_control_with_a_reason() -> None:
    """On healthy facts every control passes and says what it found."""
    results = evaluate(healthy())
    assert [r.status for r in results] == [ControlStatus.PASS] * len(CRITERIA)
    assert all(r.reason and not r.failures for r in results)
    assert summary(results) == {
        "controls": 8,
        "passing": 8,
        "failing": 0,
        "failing_ids": [],
        "all_pass": True,
    }
    assert "Q2 review" in result_of(healthy(), "CC6.3").reason


def test_cc61_fails_naming_admins_without_mfa() -> None:
    """Without required MFA, each owner or admin who has not enrolled is named."""
    facts = replace(
        healthy(),
        logical_access=LogicalAccessFacts(admins=3, admins_without_mfa=("bob@acme.test",)),
    )
    result = failing(facts, "CC6.1")
    assert "bob@acme.test" in result.reason
    assert result.failures == ("bob@acme.test",)
    assert summary(evaluate(facts))["failing_ids"] == ["logical-access"]


def test_cc61_passes_when_the_organization_requires_mfa() -> None:
    """Required MFA blocks an admin who has not enrolled, so the control passes and says so."""
    facts = replace(
        healthy(),
        logical_access=LogicalAccessFacts(
            admins=3, admins_without_mfa=("bob@acme.test",), require_mfa=True
        ),
    )
    result = result_of(facts, "CC6.1")
    assert result.status is ControlStatus.PASS
    assert "requires MFA" in result.reason and "blocked until they enrol" in result.reason


def test_cc61_fails_naming_versions_not_sealed_under_a_data_key() -> None:
    """A version whose data key is gone (or that is no envelope) is named."""
    facts = replace(
        healthy(),
        logical_access=LogicalAccessFacts(unprotected_versions=("app/production/DB v2",)),
    )
    assert "app/production/DB v2" in failing(facts, "CC6.1").reason


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"stale_requests": ("carol@acme.test asked for read on app on 2026-05-01",)}, "carol"),
        ({"unauthorised_grants": ("dan@acme.test: write on app/production",)}, "dan@acme.test"),
        ({"self_approvals": ("access request 01ABC for app",)}, "01ABC"),
    ],
)
def test_cc62_fails_naming_each_unauthorised_item(change: dict[str, object], named: str) -> None:
    """A stale request, a permanent grant without a request, or a self-approval fails CC6.2."""
    facts = replace(healthy(), authorisation=AuthorisationFacts(**change))  # type: ignore[arg-type]
    assert named in failing(facts, "CC6.2").reason


@pytest.mark.parametrize(
    ("signed", "expected"),
    [(None, "none was ever signed off"), (NOW - 91 * DAY, "was signed off"), (NOW + DAY, "was")],
)
def test_cc63_fails_without_a_review_signed_off_in_the_last_90_days(
    signed: float | None, expected: str
) -> None:
    """No review, one older than 90 days, or one signed after the period fails CC6.3."""
    facts = replace(healthy(), removal=RemovalFacts(last_review="Q1", last_signed_off_at=signed))
    reason = failing(facts, "CC6.3").reason
    assert "No access review signed off in the 90 days" in reason and expected in reason


def test_cc63_fails_naming_unapplied_revokes_and_offboarded_members_with_access() -> None:
    """A revoke decision not applied and an offboarded member's live token are both named."""
    facts = replace(
        healthy(),
        removal=RemovalFacts(
            last_review="Q2",
            last_signed_off_at=NOW - DAY,
            unapplied_revokes=("ci-bot (machine) revoked in review 'Q2' still has access",),
            offboarded_with_access=("eve@acme.test (offboarded 2026-05-01) holds 1 live tokens",),
        ),
    )
    result = failing(facts, "CC6.3")
    assert "ci-bot" in result.reason and "eve@acme.test" in result.reason
    assert len(result.failures) == 2


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"tokens_without_expiry": ("API key 'deploy' of bob@acme.test",)}, "'deploy'"),
        ({"machines_without_allow_list": ("billing-worker",)}, "billing-worker"),
    ],
)
def test_cc66_fails_naming_endless_tokens_and_unfenced_machines(
    change: dict[str, object], named: str
) -> None:
    """A live token that never expires, or a machine without an allow-list, fails CC6.6."""
    facts = replace(healthy(), external_access=ExternalAccessFacts(**change))  # type: ignore[arg-type]
    assert named in failing(facts, "CC6.6").reason


def test_cc67_fails_when_production_export_needs_one_person() -> None:
    """A production environment whose policy lets one person export it whole is named."""
    facts = replace(
        healthy(),
        data_movement=DataMovementFacts(
            export_approvals=(("prod", 2), ("production", 1)), tls=True
        ),
    )
    result = failing(facts, "CC6.7")
    assert "production (export_approvals 1)" in result.reason
    assert "prod (" not in result.reason


def test_cc67_fails_on_plain_http_and_passes_behind_a_trusted_proxy() -> None:
    """Plain HTTP without a trusted TLS proxy fails; a trusted proxy passes."""
    plain = replace(healthy(), data_movement=DataMovementFacts(export_approvals=()))
    assert "plain HTTP" in failing(plain, "CC6.7").reason
    proxied = replace(plain, data_movement=DataMovementFacts(trusted_proxies=True))
    result = result_of(proxied, "CC6.7")
    assert result.status is ControlStatus.PASS
    assert "no production environment exists" in result.reason.lower()


def test_cc71_fails_naming_exposed_secrets_not_rotated() -> None:
    """A secret whose current version was found outside the vault fails CC7.1."""
    facts = replace(
        healthy(),
        detection=DetectionFacts(
            exposures_recorded=2,
            exposed_current=("app/production/STRIPE v3 found at src/app.py:3 (2026-05-01)",),
        ),
    )
    assert "app/production/STRIPE v3" in failing(facts, "CC7.1").reason
    resolved = replace(healthy(), detection=DetectionFacts(exposures_recorded=2))
    assert "every exposed secret was rotated" in result_of(resolved, "CC7.1").reason


def test_cc72_fails_when_the_log_does_not_verify() -> None:
    """A log that does not verify fails CC7.2 with the verifier's first problem."""
    facts = replace(
        healthy(),
        monitoring=MonitoringFacts(
            log_verified=False, verify_problem="entry #7 (01XYZ) was altered", active_webhooks=1
        ),
    )
    assert "entry #7 (01XYZ) was altered" in failing(facts, "CC7.2").reason


def test_cc72_fails_when_an_entry_waits_for_a_checkpoint_and_when_no_one_is_alerted() -> None:
    """An entry unsigned for over an hour fails (unless the deployment signs less often);
    so does having no webhook and no SIEM."""
    waiting = replace(
        healthy(), monitoring=MonitoringFacts(oldest_unsigned_at=NOW - 7200, active_webhooks=1)
    )
    assert "waited 2.0 hours" in failing(waiting, "CC7.2").reason
    slow_signer = replace(
        healthy(),
        monitoring=MonitoringFacts(
            oldest_unsigned_at=NOW - 7200, active_webhooks=1, checkpoint_lag_allowed=3 * 3600
        ),
    )
    assert result_of(slow_signer, "CC7.2").status is ControlStatus.PASS
    silent = replace(healthy(), monitoring=MonitoringFacts())
    assert "No one is alerted" in failing(silent, "CC7.2").reason
    siem = replace(healthy(), monitoring=MonitoringFacts(siem_streams=1))
    assert result_of(siem, "CC7.2").status is ControlStatus.PASS


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"overdue": ("app/production/DB (due 2026-04-01, every 90 days)",)}, "due 2026-04-01"),
        ({"flagged": ("app/production/DB v2: offboarding: eve@acme.test",)}, "offboarding"),
        ({"policy_breaches": ("app/production/DB: production requires owner",)}, "requires owner"),
        ({"versions_without_author": ("app/production/DB v1",)}, "without an author"),
    ],
)
def test_cc81_fails_naming_each_change_problem(change: dict[str, object], named: str) -> None:
    """An overdue or flagged secret, a policy breach or a version without author fails CC8.1."""
    facts = replace(healthy(), change=ChangeFacts(**change))  # type: ignore[arg-type]
    assert named in failing(facts, "CC8.1").reason


def test_cc81_claims_every_secret_within_policy_only_when_it_passes() -> None:
    """A failing CC8.1 keeps no note saying every secret is on schedule and within policy;
    a passing one does."""
    breach = ChangeFacts(policy_breaches=("app/production/DB: production requires owner",))
    assert control_checks.change(replace(healthy(), change=breach)).notes == []
    assert "every one within its environment's policy" in control_checks.change(healthy()).reason()


def test_a_long_list_is_cut_in_the_reason_and_kept_whole_in_failures() -> None:
    """The reason names the first ten items and how many more; ``failures`` keeps all."""
    admins = tuple(f"admin{n}@acme.test" for n in range(15))
    facts = replace(healthy(), logical_access=LogicalAccessFacts(admins_without_mfa=admins))
    result = failing(facts, "CC6.1")
    assert "admin9@acme.test; and 5 more" in result.reason
    assert "admin10@acme.test" not in result.reason
    assert result.failures == admins
    assert result.to_json()["failures"] == list(admins)

"""The retention settings of a deployment written out as a policy an auditor can read
(``retention-policy.md`` of an evidence pack)."""

from __future__ import annotations

from typing import Any

from coffer.domain.evidence import day_text, human_duration, iso_time, maybe_iso
from coffer.services.compliance_facts import Deployment


def _audit_paragraph(deployment: Deployment, oldest: float | None) -> str:
    days = deployment.audit_retention_days
    if days > 0:
        kept = (
            f"Entries older than {days} days are pruned (COFFER_AUDIT_RETENTION_DAYS={days}). "
            "A prune removes entries only up to the newest signed checkpoint before the cutoff, "
            "so what remains still verifies from a signed checkpoint, and the prune itself is "
            "recorded as `audit.pruned`."
        )
    else:
        kept = "Entries are kept without limit (COFFER_AUDIT_RETENTION_DAYS=0: nothing is pruned)."
    held = (
        f"The oldest entry still held was written on {day_text(oldest)}."
        if oldest is not None
        else "The log holds no entry yet."
    )
    return (
        "Every change and every read of a secret is recorded in coffer's append-only audit "
        "log, in the same database transaction as the change itself, so no change commits "
        f"without its record. {kept} {held} Entries join a Merkle tree (RFC 9162) within "
        "seconds, and a checkpoint of the tree signed with Ed25519 is made every "
        f"{deployment.checkpoint_entries} entries and at most "
        f"{human_duration(deployment.checkpoint_seconds)} after a new entry."
    )


def retention_policy(deployment: Deployment, oldest: float | None, now: float) -> dict[str, Any]:
    """Returns the retention settings and the policy they amount to, as Markdown."""
    streams = ", ".join(deployment.siem_streams) or "none"
    text = "\n".join(
        [
            "# Retention policy",
            "",
            f"Written by coffer on {iso_time(now)} from the server's configuration.",
            "",
            "## Audit log",
            "",
            _audit_paragraph(deployment, oldest),
            f"Copies leave the server through SIEM streams ({streams}) and exports; those "
            "copies follow the receiving system's retention.",
            "",
            "## Secrets and keys",
            "",
            "Every version of a secret is kept, encrypted under its project's data key, until "
            "the secret is deleted; a secret with a time to live or a read limit is destroyed "
            "when it expires or is used up. Deleting a secret removes its versions; the audit "
            "entries about it remain. When a project's data key is rotated, every version is "
            "re-encrypted under the new key and the old key is then destroyed.",
            "",
            "## Sessions and credentials",
            "",
            f"Browser sessions end after {human_duration(deployment.session_idle)} idle and "
            f"{human_duration(deployment.session_max)} at most. CLI tokens last "
            f"{human_duration(deployment.cli_token_ttl)} unless issued shorter. Invitations "
            f"can be accepted for {human_duration(deployment.invitation_ttl)}. Tokens are "
            "stored only as hashes.",
            "",
            "## Compliance records",
            "",
            "Access requests and their decisions, approvals of separated duties, access "
            "reviews (every line, its decision and the signed-off digest) and offboarding "
            "records are kept without limit: they are not pruned with the audit log.",
            "",
        ]
    )
    return {
        "audit_retention_days": deployment.audit_retention_days,
        "checkpoint_entries": deployment.checkpoint_entries,
        "checkpoint_seconds": deployment.checkpoint_seconds,
        "session_idle_seconds": deployment.session_idle,
        "session_max_seconds": deployment.session_max,
        "cli_token_ttl_seconds": deployment.cli_token_ttl,
        "invitation_ttl_seconds": deployment.invitation_ttl,
        "siem_streams": list(deployment.siem_streams),
        "oldest_audit_entry": maybe_iso(oldest),
        "policy": text,
    }

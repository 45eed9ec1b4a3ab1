"""The SOC 2 control table computed from live state, and the evidence for a period (issue 9,
parts 6 and 7)."""

from __future__ import annotations

from sqlalchemy.engine import Engine

from coffer.services.access import AccessGate
from coffer.services.audit import AuditService


class ComplianceService:
    """Placeholder wired by ``bootstrap``; filled in by issue 9's work."""

    def __init__(self, engine: Engine, audit: AuditService, gate: AccessGate) -> None:
        self._engine = engine
        self._audit = audit
        self._gate = gate

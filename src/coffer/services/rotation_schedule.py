"""When each secret was last rotated and when it is next due; secrets flagged for rotation
now; the ``rotation.due``/``rotation.overdue`` reminders (issue 9, part 2)."""

from __future__ import annotations

from sqlalchemy.engine import Engine

from coffer.audit.writer import AuditWriter
from coffer.services.access import AccessGate


class RotationService:
    """Placeholder wired by ``bootstrap``; filled in by issue 9's work."""

    def __init__(self, engine: Engine, audit: AuditWriter, gate: AccessGate) -> None:
        self._engine = engine
        self._audit = audit
        self._gate = gate

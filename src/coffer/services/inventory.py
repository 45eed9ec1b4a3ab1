"""Inventory metadata of secrets, the organization's environment policies and compliance
settings (issue 9, part 1)."""

from __future__ import annotations

from sqlalchemy.engine import Engine

from coffer.audit.writer import AuditWriter
from coffer.services.access import AccessGate


class InventoryService:
    """Placeholder wired by ``bootstrap``; filled in by issue 9's work."""

    def __init__(self, engine: Engine, audit: AuditWriter, gate: AccessGate) -> None:
        self._engine = engine
        self._audit = audit
        self._gate = gate

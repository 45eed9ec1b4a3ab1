"""Rotators: change a credential at its source and store the new value (issue 9, part 2)."""

from __future__ import annotations

from sqlalchemy.engine import Engine

from coffer.services.access import AccessGate
from coffer.services.secret_ops import SecretOps


class RotatorService:
    """Placeholder wired by ``bootstrap``; filled in by issue 9's work."""

    def __init__(self, engine: Engine, ops: SecretOps, gate: AccessGate) -> None:
        self._engine = engine
        self._ops = ops
        self._gate = gate

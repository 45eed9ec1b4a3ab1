"""The rotation report: every secret the caller may read, when it was last rotated, where it
leaked, and whether it must be rotated now (see ``domain.exposures``)."""

from __future__ import annotations

import time

from sqlalchemy.engine import Engine

from coffer.domain.access import Action
from coffer.domain.exposures import RotationEntry, report_order
from coffer.domain.models import CallContext
from coffer.services.access import AccessGate
from coffer.services.exposures import readable_environments
from coffer.storage import exposure_store
from coffer.storage.database import read_snapshot


class RotationReportService:
    """Builds the rotation report. Reading it records nothing: it shows metadata, never
    values."""

    def __init__(self, engine: Engine, gate: AccessGate) -> None:
        self._engine = engine
        self._gate = gate

    def report(self, ctx: CallContext, project: str | None = None) -> list[RotationEntry]:
        """Returns the unexpired secrets of every environment the caller may read (of
        ``project`` only, when given), secrets to rotate now first (``report_order``).
        Raises NotFound for an unknown project, and AccessDenied when the caller may read
        none of its environments."""
        self._gate.require(ctx, Action.PROJECT_VIEW, project=project)
        now = time.time()
        entries: list[RotationEntry] = []
        with read_snapshot(self._engine) as conn:
            scopes = readable_environments(conn, ctx, project)
            for found, env in scopes:
                exposures = exposure_store.exposures_in(conn, env.id)
                entries.extend(
                    RotationEntry(
                        project=found.name,
                        environment=env.name,
                        key=secret.key,
                        current_version=secret.current_version,
                        last_rotated=secret.last_rotated,
                        exposures=tuple(exposures.get(secret.secret_id, ())),
                    )
                    for secret in exposure_store.current_secrets(conn, env.id, now)
                )
        if project is not None and not scopes:
            self._gate.deny(
                ctx,
                Action.SECRET_READ,
                f"read access to no environment of project {project} is granted",
                project=project,
            )
        return report_order(entries)

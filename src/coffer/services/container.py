"""The services of one running vault, built once by ``bootstrap``."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.engine import Engine

from coffer.services.auth import Authenticator
from coffer.services.fast_read import FastSecretReader
from coffer.services.projects import ProjectService
from coffer.services.secrets import SecretService
from coffer.services.transfer import TransferService


@dataclass(frozen=True)
class Services:
    """Everything an entry point may call."""

    engine: Engine
    auth: Authenticator
    projects: ProjectService
    secrets: SecretService
    transfer: TransferService
    fast_reader: FastSecretReader

    def close(self) -> None:
        """Releases database connections."""
        self.engine.dispose()

"""Applies the one policy function (``domain.access.decide``) to a call and records refusals.

Every service method asks ``require`` before it opens its transaction; a refusal is
recorded as ``access.denied`` (in its own transaction, so it survives the failed request)
and raised as ``AccessDenied``. ``allows`` answers the same question without side effects,
for filtering lists and for checks inside a transaction.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import NoReturn

from sqlalchemy.engine import Engine

from coffer.audit.writer import AuditWriter
from coffer.domain.access import Action, Decision, can_see_project, decide
from coffer.domain.errors import AccessDenied
from coffer.domain.events import Event, Result
from coffer.domain.models import ActorKind, CallContext


def decision_for(
    ctx: CallContext,
    action: Action,
    *,
    project: str | None = None,
    environment: str | None = None,
    now: float | None = None,
) -> Decision:
    """Returns the policy's decision for this caller and request."""
    actor = ctx.actor
    return decide(
        actor.role,
        actor.grants,
        actor.restrictions,
        action,
        is_person=actor.is_person,
        is_machine=actor.kind is ActorKind.MACHINE,
        project=project,
        environment=environment,
        source_ip=ctx.source_ip,
        now=time.time() if now is None else now,
    )


class AccessGate:
    """Enforces the policy for services."""

    def __init__(self, engine: Engine, audit: AuditWriter) -> None:
        self._engine = engine
        self._audit = audit

    def require(
        self,
        ctx: CallContext,
        action: Action,
        *,
        project: str | None = None,
        environment: str | None = None,
    ) -> None:
        """Returns when the policy allows the request; otherwise records ``access.denied``
        and raises AccessDenied with the policy's reason. Must not be called while the
        caller holds a connection (it may open one)."""
        decision = decision_for(ctx, action, project=project, environment=environment)
        if not decision.allowed:
            self.deny(ctx, action, decision.reason, project=project, environment=environment)

    def deny(
        self,
        ctx: CallContext,
        action: Action,
        reason: str,
        *,
        project: str | None = None,
        environment: str | None = None,
    ) -> NoReturn:
        """Records ``access.denied`` and raises AccessDenied with ``reason``."""
        with self._engine.begin() as conn:
            self._audit.append(
                conn,
                ctx,
                Event.ACCESS_DENIED,
                project=project,
                environment=environment,
                result=Result.FAILURE,
                metadata={"action": action.value, "reason": reason},
            )
        raise AccessDenied(reason)

    @staticmethod
    def allows(
        ctx: CallContext,
        action: Action,
        *,
        project: str | None = None,
        environment: str | None = None,
    ) -> bool:
        """True when the policy allows the request (no side effects)."""
        return decision_for(ctx, action, project=project, environment=environment).allowed

    @staticmethod
    def sees_project(ctx: CallContext, project: str, environments: Iterable[str]) -> bool:
        """True when the caller has some access to the project or one of its environments
        (callers have already required ``PROJECT_VIEW``)."""
        return can_see_project(ctx.actor.role, ctx.actor.grants, project, environments, time.time())

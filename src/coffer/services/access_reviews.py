"""Access review campaigns: every identity with its access and last use, kept or revoked,
signed off as evidence (issue 9, part 4; the rules are in ``domain.access_reviews``).

A ``revoke`` takes effect in the same transaction as the decision: a person is offboarded
exactly as ``OffboardingService`` does it (recorded with ``via`` ``access_review``), a
machine is deleted and its tokens revoked as ``AccessService.delete_machine`` does it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from coffer.audit.writer import AuditWriter
from coffer.domain.access import Action
from coffer.domain.access_reviews import (
    AccessReview,
    DecisionEffect,
    IdentityKind,
    ReviewCounts,
    ReviewDecision,
    ReviewItem,
    ReviewStatus,
    canonical_review,
    count_items,
    describe,
    find_item,
    parse_decision,
    parse_due,
    parse_period,
    review_digest,
    validate_note,
    validate_review_name,
)
from coffer.domain.errors import Conflict, InvalidInput, NotFound
from coffer.domain.events import Event
from coffer.domain.models import CallContext
from coffer.domain.names import display_name
from coffer.domain.offboarding import OffboardingRecord
from coffer.services.access import AccessGate
from coffer.services.offboarding import OffboardingService, RefusedForActor
from coffer.storage import access_store, review_store, token_store
from coffer.storage.ids import new_id

MAX_IDENTITY_REFERENCE = 254


@dataclass(frozen=True)
class ReviewSummary:
    """A campaign with its counts and the current names of the people behind its ids."""

    review: AccessReview
    counts: ReviewCounts
    names: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ReviewDetail(ReviewSummary):
    """A campaign with its lines, and which lines' identities still exist."""

    items: tuple[ReviewItem, ...] = ()
    existing: frozenset[str] = frozenset()


@dataclass(frozen=True)
class DecisionResult:
    """A decided line and what the decision did: the offboarding of a revoked person, or
    how many tokens a revoked machine lost."""

    review: AccessReview
    item: ReviewItem
    effect: DecisionEffect
    offboarding: OffboardingRecord | None = None
    tokens_revoked: int | None = None
    names: dict[str, str] = field(default_factory=dict)


def _not_found(review_id: str) -> NotFound:
    return NotFound(f"no access review {display_name(review_id)}", field="id")


def _unchangeable(review: AccessReview) -> Conflict:
    return Conflict(
        f"access review {display_name(review.name)} is signed off; it cannot change any more",
        field="id",
    )


class AccessReviewService:
    """Starts, decides and signs off access review campaigns (admins and owners)."""

    def __init__(
        self,
        engine: Engine,
        audit: AuditWriter,
        gate: AccessGate,
        offboarding: OffboardingService,
    ) -> None:
        self._engine = engine
        self._audit = audit
        self._gate = gate
        self._offboarding = offboarding

    def _names(
        self, conn: sa.Connection, review: AccessReview, items: tuple[ReviewItem, ...]
    ) -> dict[str, str]:
        """Names of the campaign's actors: as they are now, else as the snapshot had them
        (people removed since keep the name they had)."""
        ids = {review.created_by, review.signed_off_by, *(i.decided_by for i in items)}
        known = {item.identity_id: item.identity_name for item in items}
        current = review_store.identity_names(conn, review.org_id, (i for i in ids if i))
        return {i: current.get(i) or known[i] for i in ids if i and (i in current or i in known)}

    def _detail(self, conn: sa.Connection, review: AccessReview) -> ReviewDetail:
        items = tuple(review_store.review_items(conn, review.id))
        existing = review_store.existing_identities(
            conn, review.org_id, (i.identity_id for i in items)
        )
        return ReviewDetail(
            review=review,
            counts=count_items(items),
            names=self._names(conn, review, items),
            items=items,
            existing=frozenset(existing),
        )

    def start(self, ctx: CallContext, name: str, due: str | None = None) -> ReviewDetail:
        """Starts a campaign listing every person and machine of the organization as it is
        now; returns it. Raises InvalidInput naming ``name`` or ``due`` (a date or ISO 8601
        time, in the future)."""
        review_name = validate_review_name(name)
        now = round(time.time(), 6)
        due_at = parse_due(due, now)
        self._gate.require(ctx, Action.TEAM_MANAGE)
        with self._engine.begin() as conn:
            items = review_store.snapshot_identities(conn, ctx.actor.org_id, now)
            review = AccessReview(
                id=new_id(),
                org_id=ctx.actor.org_id,
                name=review_name,
                status=ReviewStatus.OPEN,
                created_by=ctx.actor.id,
                created_at=now,
                due_at=due_at,
            )
            review_store.insert_review(conn, review, items)
            people = sum(1 for i in items if i.identity_kind is IdentityKind.USER)
            self._audit.append(
                conn,
                ctx,
                Event.REVIEW_STARTED,
                metadata={
                    "review_id": review.id,
                    "name": review_name,
                    "people": people,
                    "machines": len(items) - people,
                    "due_at": due_at,
                },
            )
            return self._detail(conn, review)

    def list(
        self, ctx: CallContext, start: str | None = None, end: str | None = None
    ) -> list[ReviewSummary]:
        """Returns the campaigns active during the period (``from``/``to``: dates or ISO 8601
        times; started by its end and not signed off before its start), newest first. Raises
        InvalidQuery naming the parameter."""
        period = parse_period(start, end)
        self._gate.require(ctx, Action.TEAM_VIEW)
        with self._engine.connect() as conn:
            found = review_store.list_reviews(conn, ctx.actor.org_id, period)
            ids = {i for review, _ in found for i in (review.created_by, review.signed_off_by)}
            names = review_store.identity_names(conn, ctx.actor.org_id, (i for i in ids if i))
        return [ReviewSummary(review, counts, names) for review, counts in found]

    def show(self, ctx: CallContext, review_id: str) -> ReviewDetail:
        """Returns a campaign with its lines; raises NotFound."""
        self._gate.require(ctx, Action.TEAM_VIEW)
        with self._engine.connect() as conn:
            review = review_store.find_review(conn, ctx.actor.org_id, review_id)
            if review is None:
                raise _not_found(review_id)
            return self._detail(conn, review)

    def evidence(self, ctx: CallContext, review_id: str) -> tuple[AccessReview, bytes]:
        """Returns a signed-off campaign and its canonical JSON, whose SHA-256 is its digest
        (as written in its ``review.signed_off`` audit entry). Raises NotFound, and Conflict
        while it is open."""
        self._gate.require(ctx, Action.TEAM_VIEW)
        with self._engine.connect() as conn:
            review = review_store.find_review(conn, ctx.actor.org_id, review_id)
            if review is None:
                raise _not_found(review_id)
            if review.status is not ReviewStatus.SIGNED_OFF:
                raise Conflict(
                    f"access review {display_name(review.name)} is not signed off yet; its "
                    "evidence is fixed at sign-off",
                    field="id",
                )
            return review, canonical_review(review, review_store.review_items(conn, review.id))

    def decide(
        self,
        ctx: CallContext,
        review_id: str,
        identity: str,
        decision: str,
        note: str | None = None,
    ) -> DecisionResult:
        """Records ``keep`` or ``revoke`` for the line of ``identity`` (its id, e-mail or
        machine name) and, for ``revoke``, offboards the person or deletes the machine in
        the same transaction. Raises InvalidInput (``decision``, ``note``, ``identity``),
        NotFound (campaign or line), AccessDenied for one's own line, Conflict once signed
        off, for a line already revoked, for the owner, and for keeping an identity that no
        longer exists. A refusal changes nothing."""
        chosen = parse_decision(decision)
        text = validate_note(note)
        if not isinstance(identity, str) or not identity.strip():
            raise InvalidInput("identity must name an e-mail, a machine or an id", field="identity")
        if len(identity) > MAX_IDENTITY_REFERENCE:
            raise InvalidInput(
                f"identity must be at most {MAX_IDENTITY_REFERENCE} characters", field="identity"
            )
        self._gate.require(ctx, Action.TEAM_MANAGE)
        now = round(time.time(), 6)
        try:
            with self._engine.begin() as conn:
                review = review_store.find_review(
                    conn, ctx.actor.org_id, review_id, for_update=True
                )
                if review is None:
                    raise _not_found(review_id)
                if review.status is ReviewStatus.SIGNED_OFF:
                    raise _unchangeable(review)
                items = tuple(review_store.review_items(conn, review.id))
                item = find_item(items, identity)
                if item is None:
                    raise NotFound(
                        f"{display_name(identity.strip())} is not listed in access review "
                        f"{display_name(review.name)}",
                        field="identity",
                    )
                return self._decide_line(conn, ctx, review, item, chosen, text, now)
        except RefusedForActor as refused:
            self._gate.deny(ctx, Action.TEAM_MANAGE, refused.message)

    def _decide_line(
        self,
        conn: sa.Connection,
        ctx: CallContext,
        review: AccessReview,
        item: ReviewItem,
        chosen: ReviewDecision,
        note: str | None,
        now: float,
    ) -> DecisionResult:
        if item.identity_id == ctx.actor.id:
            raise RefusedForActor(
                f"nobody decides their own line of an access review: another admin must "
                f"decide {describe(item)}"
            )
        if item.decision is ReviewDecision.REVOKE:
            raise Conflict(
                f"{describe(item)} was already revoked in this review; a revocation is final",
                field="identity",
            )
        record: OffboardingRecord | None = None
        revoked: int | None = None
        if not review_store.identity_exists(conn, review.org_id, item):
            if chosen is ReviewDecision.KEEP:
                raise Conflict(
                    f"{describe(item)} no longer exists (removed since the review started), "
                    "so it cannot be kept; record revoke to close its line",
                    field="identity",
                )
            effect = DecisionEffect.ALREADY_REMOVED
        elif chosen is ReviewDecision.KEEP:
            effect = DecisionEffect.KEPT
        elif item.identity_kind is IdentityKind.USER:
            record = self._offboarding.offboard_member(
                conn, ctx, item.identity_id, now, review_id=review.id
            )
            # None: removed by a concurrent request after the existence check above.
            effect = DecisionEffect.ALREADY_REMOVED if record is None else DecisionEffect.OFFBOARDED
        else:
            revoked = self._delete_machine(conn, ctx, review, item, now)
            effect = DecisionEffect.MACHINE_DELETED
        review_store.record_decision(
            conn, review.id, item.identity_id, decision=chosen, by=ctx.actor.id, at=now, note=note
        )
        self._audit.append(
            conn,
            ctx,
            Event.REVIEW_DECIDED,
            metadata={
                "review_id": review.id,
                "identity_id": item.identity_id,
                "identity": item.identity_name,
                "identity_kind": item.identity_kind.value,
                "decision": chosen.value,
                "effect": effect.value,
            },
        )
        decided = replace(item, decision=chosen, decided_by=ctx.actor.id, decided_at=now, note=note)
        return DecisionResult(
            review=review,
            item=decided,
            effect=effect,
            offboarding=record,
            tokens_revoked=revoked,
            names=self._names(conn, review, (decided,)),
        )

    def _delete_machine(
        self,
        conn: sa.Connection,
        ctx: CallContext,
        review: AccessReview,
        item: ReviewItem,
        now: float,
    ) -> int:
        """Deletes the line's machine and revokes its tokens, with the storage steps and the
        ``machine.deleted`` entry of ``AccessService.delete_machine``; returns how many
        tokens were revoked."""
        revoked = token_store.revoke_tokens(conn, now=now, identity_id=item.identity_id)
        access_store.delete_machine(conn, item.identity_id)
        self._audit.append(
            conn,
            ctx,
            Event.MACHINE_DELETED,
            metadata={
                "name": item.identity_name,
                "tokens_revoked": revoked,
                "review_id": review.id,
            },
        )
        return revoked

    def sign_off(self, ctx: CallContext, review_id: str) -> ReviewDetail:
        """Signs a campaign off once every line is decided: it is fixed for good and its
        ``digest`` (SHA-256 of ``canonical_review``) is stored and written to the
        ``review.signed_off`` entry. Raises NotFound, Conflict naming how many lines are
        undecided, or when already signed off."""
        self._gate.require(ctx, Action.TEAM_MANAGE)
        now = round(time.time(), 6)
        with self._engine.begin() as conn:
            review = review_store.find_review(conn, ctx.actor.org_id, review_id, for_update=True)
            if review is None:
                raise _not_found(review_id)
            if review.status is ReviewStatus.SIGNED_OFF:
                raise _unchangeable(review)
            items = review_store.review_items(conn, review.id)
            counts = count_items(items)
            if counts.undecided:
                raise Conflict(
                    f"{counts.undecided} of {counts.total} lines of access review "
                    f"{display_name(review.name)} are undecided; decide every line (keep or "
                    "revoke) before signing off",
                    field="id",
                )
            signed = replace(
                review,
                status=ReviewStatus.SIGNED_OFF,
                signed_off_by=ctx.actor.id,
                signed_off_at=now,
            )
            signed = replace(signed, digest=review_digest(signed, items))
            review_store.sign_off(conn, signed)
            self._audit.append(
                conn,
                ctx,
                Event.REVIEW_SIGNED_OFF,
                metadata={
                    "review_id": review.id,
                    "name": review.name,
                    "digest": signed.digest,
                    "items": counts.total,
                    "kept": counts.kept,
                    "revoked": counts.revoked,
                },
            )
            return self._detail(conn, signed)

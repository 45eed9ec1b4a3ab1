"""The one policy function and its helpers (coffer.domain.access), table by table, with a
property that grants never give more than they say and never narrow an owner."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coffer.domain.access import (
    AccessLevel,
    Action,
    Grant,
    Restrictions,
    Role,
    can_see_project,
    decide,
    effective_access,
    parse_access,
    parse_networks,
    parse_role,
)
from coffer.domain.errors import InvalidInput

NOW = 1_700_000_000.0
NONE, READ, WRITE = AccessLevel.NONE, AccessLevel.READ, AccessLevel.WRITE
VIEWER, ADMIN, OWNER = Role.VIEWER, Role.ADMIN, Role.OWNER
OPEN = Restrictions()


def _decide(
    role: Role | None,
    action: Action,
    *,
    grants: tuple[Grant, ...] = (),
    restrictions: Restrictions = OPEN,
    is_person: bool = True,
    is_machine: bool = False,
    source_ip: str | None = "192.0.2.1",
    now: float = NOW,
    project: str | None = "app",
    environment: str | None = "production",
) -> tuple[bool, str]:
    decision = decide(
        role,
        grants,
        restrictions,
        action,
        is_person=is_person,
        is_machine=is_machine,
        project=project,
        environment=environment,
        source_ip=source_ip,
        now=now,
    )
    return decision.allowed, decision.reason


# --- organization-wide actions ------------------------------------------------------------

ROLE_TABLE = [
    # action, weakest role allowed
    (Action.PROJECT_MANAGE, ADMIN),
    (Action.TEAM_VIEW, ADMIN),
    (Action.TEAM_MANAGE, ADMIN),
    (Action.ORG_OWN, OWNER),
]
RANK = {None: 0, VIEWER: 1, ADMIN: 2, OWNER: 3}


@pytest.mark.parametrize(("action", "weakest"), ROLE_TABLE)
@pytest.mark.parametrize("role", [None, VIEWER, ADMIN, OWNER])
def test_organization_actions_follow_the_role(
    action: Action, weakest: Role, role: Role | None
) -> None:
    """Managing projects and the team needs admin, owning the organization needs owner;
    a denial names the action and the role it needs. Grants never help."""
    grants = (Grant("app", None, WRITE), Grant("app", "production", WRITE))
    allowed, reason = _decide(role, action, grants=grants, is_person=role is not None)
    assert allowed is (RANK[role] >= RANK[weakest])
    if not allowed:
        assert reason == f"{action.value} needs the {weakest.value} role"


@pytest.mark.parametrize(
    ("is_person", "is_machine", "self_manage", "mfa_manage", "session_end"),
    [
        (True, False, True, True, True),  # a person
        (False, False, True, False, True),  # the bootstrap token
        (False, True, False, False, False),  # a machine
    ],
)
def test_self_management_by_kind_of_identity(
    is_person: bool, is_machine: bool, self_manage: bool, mfa_manage: bool, session_end: bool
) -> None:
    """Tokens and keys may be managed, and a session ended, by anyone but machines; MFA
    only by a person; everyone may see who they are."""
    role = None if is_machine else OWNER
    kinds = {"is_person": is_person, "is_machine": is_machine}
    assert _decide(role, Action.SELF_MANAGE, **kinds)[0] is self_manage
    assert _decide(role, Action.MFA_MANAGE, **kinds)[0] is mfa_manage
    assert _decide(role, Action.SESSION_END, **kinds)[0] is session_end
    assert _decide(role, Action.SESSION_VIEW, **kinds)[0]


def test_project_view_is_allowed_to_any_identity_and_filtered_elsewhere() -> None:
    """Listing projects is open to every identity (machines included)."""
    for role in (None, VIEWER, ADMIN, OWNER):
        assert _decide(role, Action.PROJECT_VIEW, is_machine=role is None)[0]


# --- secrets ------------------------------------------------------------------------------

SECRET_TABLE = [
    # role, grants, environment, read, write
    (VIEWER, (), "production", True, False),
    (ADMIN, (), "production", True, True),
    (OWNER, (), "production", True, True),
    (None, (), "production", False, False),
    (VIEWER, (Grant("app", "development", WRITE),), "development", True, True),
    (VIEWER, (Grant("app", "development", WRITE),), "production", True, False),
    (VIEWER, (Grant("app", "production", NONE),), "production", False, False),
    (ADMIN, (Grant("app", "production", READ),), "production", True, False),
    (ADMIN, (Grant("app", None, NONE),), "staging", False, False),
    (OWNER, (Grant("app", None, NONE), Grant("app", "production", NONE)), "production", True, True),
    (None, (Grant("app", "production", READ),), "production", True, False),
    (None, (Grant("app", "production", READ),), "staging", False, False),
    (None, (Grant("app", None, WRITE),), "staging", True, True),
    (None, (Grant("web", None, WRITE),), "staging", False, False),
    (VIEWER, (Grant("app", None, NONE), Grant("app", "staging", WRITE)), "staging", True, True),
    (VIEWER, (Grant("app", "staging", NONE), Grant("app", None, WRITE)), "staging", False, False),
    (VIEWER, (Grant("app", "staging", NONE), Grant("app", None, WRITE)), "production", True, True),
    (VIEWER, (Grant("app", "production", WRITE, expires_at=NOW),), "production", True, False),
    (VIEWER, (Grant("app", "production", NONE, expires_at=NOW - 1),), "production", True, False),
    (VIEWER, (Grant("app", "production", WRITE, expires_at=NOW + 1),), "production", True, True),
]


@pytest.mark.parametrize(("role", "grants", "environment", "read", "write"), SECRET_TABLE)
def test_secret_access_by_role_and_grants(
    role: Role | None, grants: tuple[Grant, ...], environment: str, read: bool, write: bool
) -> None:
    """Role gives the default, the most specific unexpired grant overrides it (environment
    over project), an owner is never narrowed, and a denial names the level and place."""
    machine = role is None
    for action, expected in ((Action.SECRET_READ, read), (Action.SECRET_WRITE, write)):
        allowed, reason = _decide(
            role,
            action,
            grants=grants,
            environment=environment,
            is_person=not machine,
            is_machine=machine,
        )
        assert allowed is expected, action
        if not allowed:
            level = "write" if action is Action.SECRET_WRITE else "read"
            assert reason == f"{level} access to app/{environment} is not granted to this identity"


def test_secret_action_without_a_place_is_a_programming_error() -> None:
    """Asking about a secret action without project and environment raises ValueError."""
    with pytest.raises(ValueError, match=r"secret\.read needs a project and an environment"):
        _decide(VIEWER, Action.SECRET_READ, project=None, environment=None)


@pytest.mark.parametrize(
    ("role", "grants", "environment", "expected"),
    [
        (OWNER, (Grant("app", "production", NONE),), "production", WRITE),
        (VIEWER, (), "production", READ),
        (ADMIN, (), "production", WRITE),
        (None, (), "production", NONE),
        (VIEWER, (Grant("app", None, WRITE), Grant("app", "production", NONE)), "production", NONE),
        (VIEWER, (Grant("app", "production", NONE), Grant("app", None, WRITE)), "production", NONE),
        (VIEWER, (Grant("app", None, WRITE), Grant("app", "production", NONE)), "staging", WRITE),
        (VIEWER, (Grant("app", None, NONE, expires_at=NOW - 5),), "staging", READ),
        (None, (Grant("other", "production", WRITE),), "production", NONE),
    ],
)
def test_effective_access(
    role: Role | None, grants: tuple[Grant, ...], environment: str, expected: AccessLevel
) -> None:
    """The level an identity has in one environment, whatever the order of its grants."""
    for ordering in itertools.permutations(grants):
        assert effective_access(role, ordering, "app", environment, NOW) is expected


# --- restrictions -------------------------------------------------------------------------

RESTRICTION_TABLE = [
    # restrictions, source address, now, allowed, reason fragment
    (Restrictions(networks=("10.0.0.0/8",)), "10.1.2.3", NOW, True, ""),
    (Restrictions(networks=("10.0.0.0/8",)), "192.0.2.1", NOW, False, "from 192.0.2.1"),
    (Restrictions(networks=("10.0.0.0/8",)), None, NOW, False, "this address"),
    (Restrictions(networks=("10.0.0.0/8",)), "testclient", NOW, False, "not allowed"),
    (Restrictions(networks=("2001:db8::/32",)), "2001:db8::9", NOW, True, ""),
    (Restrictions(networks=("2001:db8::/32", "10.0.0.0/8")), "10.0.0.1", NOW, True, ""),
    (Restrictions(not_before=NOW + 1), "10.0.0.1", NOW, False, "not valid yet"),
    (Restrictions(not_before=NOW), "10.0.0.1", NOW, True, ""),
    (Restrictions(not_after=NOW), "10.0.0.1", NOW, False, "no longer valid"),
    (Restrictions(not_after=NOW + 1), "10.0.0.1", NOW, True, ""),
    (Restrictions(mfa_enrolment_required=True), "10.0.0.1", NOW, False, "requires MFA"),
]


BEFORE_ENROLMENT = {Action.MFA_MANAGE, Action.SESSION_VIEW, Action.SESSION_END}


@pytest.mark.parametrize(("restrictions", "source", "now", "allowed", "why"), RESTRICTION_TABLE)
def test_restrictions_apply_to_every_action(
    restrictions: Restrictions, source: str | None, now: float, allowed: bool, why: str
) -> None:
    """Allow-lists, validity windows and a pending MFA enrolment refuse every action an
    identity could otherwise take (an owner's included), with a reason saying which; only
    enrolling, and seeing or ending one's session, stay open before MFA enrolment."""
    exempt = BEFORE_ENROLMENT if restrictions.mfa_enrolment_required else set()
    for action in (a for a in Action if a not in exempt):
        result, reason = _decide(
            OWNER, action, restrictions=restrictions, source_ip=source, now=now
        )
        assert result is allowed, action
        assert why in reason


@pytest.mark.parametrize("action", sorted(BEFORE_ENROLMENT))
def test_what_a_member_without_mfa_may_still_do(action: Action) -> None:
    """With MFA enrolment pending, a person may still enrol, see and end their session."""
    pending = Restrictions(mfa_enrolment_required=True)
    assert _decide(VIEWER, action, restrictions=pending)[0]


def test_network_refusal_comes_before_every_other_reason() -> None:
    """An identity outside its networks learns only that its address is refused."""
    fenced = Restrictions(networks=("10.0.0.0/8",), not_after=NOW - 1, mfa_enrolment_required=True)
    allowed, reason = _decide(VIEWER, Action.SECRET_WRITE, restrictions=fenced)
    assert not allowed
    assert reason == "requests from 192.0.2.1 are not allowed"


# --- seeing a project ---------------------------------------------------------------------

ENVS = ("development", "staging", "production")


@pytest.mark.parametrize(
    ("role", "grants", "sees"),
    [
        (VIEWER, (), True),
        (None, (), False),
        (None, (Grant("app", "production", READ),), True),
        (None, (Grant("app", "production", READ, expires_at=NOW - 1),), False),
        (None, (Grant("web", None, READ),), False),
        (VIEWER, (Grant("app", None, NONE),), False),
        (VIEWER, (Grant("app", None, NONE), Grant("app", "staging", READ)), True),
        (ADMIN, tuple(Grant("app", env, NONE) for env in ENVS), False),
        (OWNER, (Grant("app", None, NONE),), True),
    ],
)
def test_can_see_project(role: Role | None, grants: tuple[Grant, ...], sees: bool) -> None:
    """A project is visible when the identity has some access to it or one environment."""
    assert can_see_project(role, grants, "app", ENVS, NOW) is sees


# --- parsing ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "role"),
    [
        ("viewer", VIEWER),
        (" ADMIN ", ADMIN),
        ("Viewer\n", VIEWER),
        ("".join(chr(ord(c) + 0xFEE0) for c in "admin"), ADMIN),
    ],
)
def test_parse_role_accepts_any_spelling(text: str, role: Role) -> None:
    """Roles are recognised in any case, spacing and Unicode compatibility form."""
    assert parse_role(text) is role


@pytest.mark.parametrize("text", ["owner", "OWNER", " Owner ", "o w n e r", "\uff4fwner"])
def test_parse_role_refuses_owner_unless_allowed(text: str) -> None:
    """The owner role is never handed out by parse_role (ownership moves by transfer), in any
    spelling; with allow_owner it is recognised."""
    with pytest.raises(InvalidInput, match="transfer") as refused:
        parse_role(text, field="new_role")
    assert refused.value.field == "new_role"
    assert parse_role(text, allow_owner=True) is OWNER


@pytest.mark.parametrize("text", ["root", "", "admins", "read", None, 3])
def test_parse_role_refuses_unknown_roles(text: object) -> None:
    """Anything else is refused with the list of roles that may be given."""
    with pytest.raises(InvalidInput) as refused:
        parse_role(text)  # type: ignore[arg-type]
    assert refused.value.message == "role must be one of viewer, admin"
    assert refused.value.field == "role"


@pytest.mark.parametrize(("text", "level"), [("none", NONE), (" READ ", READ), ("Write", WRITE)])
def test_parse_access(text: str, level: AccessLevel) -> None:
    """Access levels are recognised in any case and spacing."""
    assert parse_access(text) is level


@pytest.mark.parametrize("text", ["rw", "", "admin", "writ", None])
def test_parse_access_refuses_unknown_levels(text: object) -> None:
    """Anything else is refused naming the field and the three levels."""
    with pytest.raises(InvalidInput) as refused:
        parse_access(text, field="scope")  # type: ignore[arg-type]
    assert refused.value.message == "scope must be one of none, read, write"
    assert refused.value.field == "scope"


def test_parse_networks_canonicalises() -> None:
    """Addresses become one-address networks and host bits are dropped."""
    parsed = parse_networks([" 10.0.0.5/8 ", "192.0.2.7", "2001:DB8::1", "2001:db8::/32"])
    assert parsed == ("10.0.0.0/8", "192.0.2.7/32", "2001:db8::1/128", "2001:db8::/32")
    assert parse_networks([]) == ()


@pytest.mark.parametrize("bad", ["intranet", "10.0.0.0/33", "300.1.1.1", "", "10.0.0.0/8/8"])
def test_parse_networks_names_the_bad_entry(bad: str) -> None:
    """An entry that is not an address or network is refused, named in the message."""
    with pytest.raises(InvalidInput) as refused:
        parse_networks(["10.0.0.0/8", bad])
    assert repr(bad) in refused.value.message
    assert refused.value.field == "allowed_ips"


# --- properties ---------------------------------------------------------------------------

_grant = st.builds(
    Grant,
    project=st.sampled_from(["app", "web"]),
    environment=st.sampled_from([None, *ENVS]),
    access=st.sampled_from(list(AccessLevel)),
    expires_at=st.one_of(st.none(), st.floats(NOW - 100, NOW + 100)),
)
_distinct_grants = st.lists(_grant, max_size=8, unique_by=lambda g: (g.project, g.environment))


@given(
    role=st.sampled_from([None, VIEWER, ADMIN]),
    grants=_distinct_grants,
    environment=st.sampled_from(ENVS),
    data=st.data(),
)
def test_a_grant_gives_exactly_its_level_where_it_applies(
    role: Role | None, grants: list[Grant], environment: str, data: st.DataObject
) -> None:
    """For a viewer, admin or machine, an active environment grant decides that environment
    (never more than its level), else an active project grant, else the role; the order of
    the grants does not matter, and decide agrees with effective_access."""
    shuffled = data.draw(st.permutations(grants))
    level = effective_access(role, shuffled, "app", environment, NOW)
    active = {(g.project, g.environment): g.access for g in grants if g.active(NOW)}
    default = {VIEWER: READ, ADMIN: WRITE}.get(role, NONE) if role else NONE
    expected = active.get(("app", environment), active.get(("app", None), default))
    assert level is expected
    machine = role is None
    for action, needed in ((Action.SECRET_READ, READ), (Action.SECRET_WRITE, WRITE)):
        allowed, _ = _decide(
            role,
            action,
            grants=tuple(shuffled),
            environment=environment,
            is_person=not machine,
            is_machine=machine,
        )
        rank = {NONE: 0, READ: 1, WRITE: 2}
        assert allowed is (rank[level] >= rank[needed])


@given(grants=st.lists(_grant, max_size=8), environment=st.sampled_from(ENVS))
def test_an_owner_is_never_narrowed(grants: list[Grant], environment: str) -> None:
    """Whatever grants an owner holds, they read and write everywhere."""
    assert effective_access(OWNER, grants, "app", environment, NOW) is WRITE
    for action in (Action.SECRET_READ, Action.SECRET_WRITE):
        assert _decide(OWNER, action, grants=tuple(grants), environment=environment)[0]

"""References between secrets: ``${KEY}``, ``${ENV.KEY}`` and ``${PROJECT.ENV.KEY}``.

A secret's value may contain references to other secrets; they are expanded when the value is
read, recursively, so a reference may point at a value that itself holds references.

Syntax
    ``${T}`` is a reference whose text ``T`` runs to the first ``}``. ``$${`` is an escape that
    produces a literal ``${`` and is not expanded (so ``$${HOME}`` reads as ``${HOME}``). Any
    other ``$`` is literal. A ``${`` with no closing ``}`` and an empty ``${}`` are errors.

Resolution of the text ``T`` (project and environment names never contain ``.``, see
``coffer.domain.names``), first rule that applies wins:

1. ``T`` has no ``.``: key ``T`` in the origin's project and environment.
2. The part before the first ``.`` names an environment of the origin's project
   (``source.has_environment``): key = the rest, in that environment.
3. ``T`` has at least two dots, the first part names a project (``source.has_project``) and
   the second an environment of it: key = the rest after the second dot, there.
4. Otherwise: key ``T``, dots included, in the origin's environment (``${api.v2}`` where no
   environment is called ``api``).

``T`` must be a valid key name (``validate_key_name``); a rule applies only when the parts it
takes are valid names. The origin is the secret whose value holds the reference; for a nested
reference it is the secret that was being expanded.

Errors are ``InvalidInput``: ``field="value"`` for syntax (unclosed ``${``, empty ``${}``),
``field="reference"`` for the rest (a text that is not a key name, a reference to a secret that
does not exist, a cycle, a chain deeper than ``max_depth``). Messages name secrets by their
``PROJECT.ENV.KEY`` form and positions; they never contain a secret value, nor the text of
something that is not a valid reference (it may be part of a password).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from coffer.domain.errors import InvalidInput
from coffer.domain.names import MAX_KEY_LENGTH, is_valid_key_name, is_valid_resource_name

_OPEN = "${"
_ESCAPED_OPEN = "$${"
_CLOSE = "}"
_ESCAPE_HINT = 'write "$${" for a literal "${"'


@dataclass(frozen=True)
class SecretRef:
    """The address of one secret: project name, environment name and key name."""

    project: str
    environment: str
    key: str

    def __str__(self) -> str:
        return f"{self.project}.{self.environment}.{self.key}"


class ReferenceSource(Protocol):
    """Where ``expand_value`` looks secrets up. Access checks and auditing are its business."""

    def value_of(self, ref: SecretRef) -> str | None:
        """Returns the current plaintext value of ``ref``, or None when it does not exist."""
        ...

    def has_environment(self, project: str, environment: str) -> bool:
        """Returns True when ``project`` has an environment called ``environment``."""
        ...

    def has_project(self, project: str) -> bool:
        """Returns True when a project called ``project`` exists."""
        ...


@dataclass(frozen=True)
class _Reference:
    text: str
    position: int


def _tokens(value: str, *, where: str) -> list[str | _Reference]:
    """Splits ``value`` into literal text and references; raises InvalidInput on bad syntax.

    ``where`` describes the value in messages ("the value of p.e.K").
    """
    tokens: list[str | _Reference] = []
    literal: list[str] = []
    index = 0
    while index < len(value):
        if value.startswith(_ESCAPED_OPEN, index):
            literal.append(_OPEN)
            index += len(_ESCAPED_OPEN)
            continue
        if not value.startswith(_OPEN, index):
            literal.append(value[index])
            index += 1
            continue
        end = value.find(_CLOSE, index + len(_OPEN))
        if end == -1:
            raise InvalidInput(
                f'{where} has "${{" at character {index} with no closing "}}"; {_ESCAPE_HINT}',
                field="value",
            )
        text = value[index + len(_OPEN) : end]
        if not text:
            raise InvalidInput(
                f'{where} has an empty reference "${{}}" at character {index}; '
                f"a reference names a secret, as in ${{KEY}}; {_ESCAPE_HINT}",
                field="value",
            )
        if literal:
            tokens.append("".join(literal))
            literal = []
        tokens.append(_Reference(text, index))
        index = end + len(_CLOSE)
    if literal:
        tokens.append("".join(literal))
    return tokens


def references_in(value: str) -> list[str]:
    """Returns the texts of the references in ``value``, in order, duplicates kept.

    ``"${db/password} and ${prod.API_KEY}"`` gives ``["db/password", "prod.API_KEY"]``; escaped
    ``$${...}`` is skipped. Raises InvalidInput(field="value") for an unclosed ``${`` or an empty
    ``${}``. The texts are not checked against the key name rule (``expand_value`` does that).
    """
    return [token.text for token in _tokens(value, where="value") if isinstance(token, _Reference)]


class _Expander:
    """The state of one ``expand_value`` call: memoised lookups and the chain being expanded."""

    def __init__(self, source: ReferenceSource, max_depth: int) -> None:
        self._source = source
        self._max_depth = max_depth
        self._expanded: dict[SecretRef, tuple[str, int]] = {}
        self._projects: dict[str, bool] = {}
        self._environments: dict[tuple[str, str], bool] = {}

    def _has_project(self, project: str) -> bool:
        if project not in self._projects:
            self._projects[project] = self._source.has_project(project)
        return self._projects[project]

    def _has_environment(self, project: str, environment: str) -> bool:
        pair = (project, environment)
        if pair not in self._environments:
            self._environments[pair] = self._source.has_environment(project, environment)
        return self._environments[pair]

    def resolve(self, text: str, origin: SecretRef) -> SecretRef:
        """Returns the secret that ``text`` (valid key name) names from ``origin``."""
        if "." not in text:
            return SecretRef(origin.project, origin.environment, text)
        first, rest = text.split(".", 1)
        if (
            is_valid_resource_name(first)
            and is_valid_key_name(rest)
            and self._has_environment(origin.project, first)
        ):
            return SecretRef(origin.project, first, rest)
        if "." in rest:
            second, key = rest.split(".", 1)
            if (
                is_valid_resource_name(first)
                and is_valid_resource_name(second)
                and is_valid_key_name(key)
                and self._has_project(first)
                and self._has_environment(first, second)
            ):
                return SecretRef(first, second, key)
        return SecretRef(origin.project, origin.environment, text)

    def expand(self, value: str, chain: list[SecretRef]) -> tuple[str, int]:
        """Returns the expansion of ``value`` (held by ``chain[-1]``) and the height of its tree.

        The height is 0 for a value without references, else one more than the tallest
        referenced secret; it lets a memoised result still respect ``max_depth``.
        """
        holder = chain[-1]
        parts: list[str] = []
        height = 0
        for token in _tokens(value, where=f"the value of {holder}"):
            if isinstance(token, str):
                parts.append(token)
                continue
            expanded, ref_height = self._expand_reference(token, chain)
            parts.append(expanded)
            height = max(height, ref_height + 1)
        return "".join(parts), height

    def _expand_reference(self, token: _Reference, chain: list[SecretRef]) -> tuple[str, int]:
        holder = chain[-1]
        if not is_valid_key_name(token.text):
            raise InvalidInput(
                f"the value of {holder} has a reference at character {token.position} that is "
                "not a valid key name: one or more segments of letters, digits, "
                '"_", "." and "-" (each starting with a letter or underscore) joined by "/", '
                f'at most {MAX_KEY_LENGTH} characters, with no ".."; {_ESCAPE_HINT}',
                field="reference",
            )
        ref = self.resolve(token.text, holder)
        if ref in chain:
            cycle = [*chain[chain.index(ref) :], ref]
            raise InvalidInput(
                "reference cycle: " + " -> ".join(str(link) for link in cycle),
                field="reference",
            )
        depth = len(chain)
        if ref in self._expanded:
            expanded, height = self._expanded[ref]
            self._check_depth(depth + height, [*chain, ref])
            return expanded, height
        self._check_depth(depth, [*chain, ref])
        raw = self._source.value_of(ref)
        if raw is None:
            raise InvalidInput(
                f"reference ${{{token.text}}} in {holder} points to {ref}, which does not exist",
                field="reference",
            )
        result = self.expand(raw, [*chain, ref])
        self._expanded[ref] = result
        return result

    def _check_depth(self, depth: int, chain: list[SecretRef]) -> None:
        if depth > self._max_depth:
            raise InvalidInput(
                f"references from {chain[0]} go deeper than the limit of {self._max_depth}: "
                + " -> ".join(str(link) for link in chain),
                field="reference",
            )


def expand_value(
    value: str, *, origin: SecretRef, source: ReferenceSource, max_depth: int = 16
) -> str:
    """Returns ``value`` (the value of ``origin``) with every reference expanded, recursively.

    Resolution follows the rules in the module docstring. ``source.value_of`` is called at most
    once per referenced secret in one call (results are memoised), and never for ``origin``.
    A chain may be ``max_depth`` references long (``origin -> a`` is one); ``$${`` becomes a
    literal ``${``. Raises InvalidInput(field="value") for an unclosed ``${`` or an empty
    ``${}`` and InvalidInput(field="reference") for a text that is not a key name, a reference
    to a secret that does not exist (naming the secret it resolved to), a cycle (giving the
    chain, ``reference cycle: a -> b -> a``) or a chain deeper than ``max_depth``.
    """
    expanded, _height = _Expander(source, max_depth).expand(value, [origin])
    return expanded

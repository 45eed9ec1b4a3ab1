"""Expansion of ${KEY}, ${ENV.KEY} and ${PROJECT.ENV.KEY} references in secret values."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from coffer.domain.errors import InvalidInput
from coffer.domain.references import SecretRef, expand_value, references_in


class DictSource:
    """A ReferenceSource over a dict of ``"project.env.key"`` to value, counting lookups."""

    def __init__(self, secrets: dict[str, str], environments: dict[str, list[str]]) -> None:
        self.secrets = {self._parse(name): value for name, value in secrets.items()}
        self.environments = environments
        self.lookups: Counter[SecretRef] = Counter()

    @staticmethod
    def _parse(name: str) -> SecretRef:
        project, environment, key = name.split(".", 2)
        return SecretRef(project, environment, key)

    def value_of(self, ref: SecretRef) -> str | None:
        self.lookups[ref] += 1
        return self.secrets.get(ref)

    def has_environment(self, project: str, environment: str) -> bool:
        return environment in self.environments.get(project, [])

    def has_project(self, project: str) -> bool:
        return project in self.environments


ORIGIN = SecretRef("shop", "dev", "DATABASE_URL")
ENVIRONMENTS = {"shop": ["dev", "prod"], "billing": ["live", "dev"], "api": ["v2"]}


def expand(value: str, secrets: dict[str, str], *, max_depth: int = 16) -> str:
    source = DictSource(secrets, ENVIRONMENTS)
    return expand_value(value, origin=ORIGIN, source=source, max_depth=max_depth)


def expand_error(value: str, secrets: dict[str, str], *, max_depth: int = 16) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        expand(value, secrets, max_depth=max_depth)
    return caught.value


def test_secret_ref_prints_as_project_env_key() -> None:
    """A reference's text form is PROJECT.ENV.KEY, the form used in messages."""
    assert str(SecretRef("shop", "prod", "db/password")) == "shop.prod.db/password"


def test_value_without_references_is_unchanged() -> None:
    """Text with no ${ is returned as it is, dollars included."""
    assert expand("p@ss$word$ {x} $", {}) == "p@ss$word$ {x} $"


def test_plain_key_resolves_in_the_origin_environment() -> None:
    """Rule 1: ${KEY} without a dot names a key in the origin's own project and environment."""
    secrets = {"shop.dev.DB_USER": "app", "shop.prod.DB_USER": "wrong"}
    assert expand("postgres://${DB_USER}@db", secrets) == "postgres://app@db"


def test_folder_key_without_dot_resolves_in_the_origin_environment() -> None:
    """Rule 1 also covers folder keys such as ${db/user}."""
    assert expand("${db/user}", {"shop.dev.db/user": "app"}) == "app"


def test_env_dot_key_resolves_in_another_environment_of_the_project() -> None:
    """Rule 2: ${ENV.KEY} names a key in another environment of the origin's project."""
    secrets = {"shop.prod.db/password": "prod-pw", "shop.dev.prod.db/password": "wrong"}
    assert expand("${prod.db/password}", secrets) == "prod-pw"


def test_project_env_key_resolves_in_another_project() -> None:
    """Rule 3: ${PROJECT.ENV.KEY} names a key in an environment of another project."""
    secrets = {"billing.live.STRIPE_KEY": "sk"}
    assert expand("${billing.live.STRIPE_KEY}", secrets) == "sk"


def test_dotted_key_falls_back_to_the_origin_environment() -> None:
    """Rule 4: when no environment or project matches, the dotted text is a key in the origin."""
    assert expand("${smtp.host}", {"shop.dev.smtp.host": "mail"}) == "mail"


def test_project_rule_needs_the_environment_to_exist() -> None:
    """Rule 3 applies only when the second part is an environment of the named project."""
    secrets = {"shop.dev.billing.staging.KEY": "local"}
    assert expand("${billing.staging.KEY}", secrets) == "local"


def test_environment_rule_wins_over_project_rule() -> None:
    """Rule 2 comes before rule 3: a name that is an environment of the origin's project wins."""
    environments = {"shop": ["dev", "api"], "api": ["v2"]}
    source = DictSource({"shop.api.v2.KEY": "env-rule", "api.v2.KEY": "project-rule"}, environments)
    assert expand_value("${api.v2.KEY}", origin=ORIGIN, source=source) == "env-rule"


def test_project_rule_applies_with_three_parts() -> None:
    """A name that is only a project (not an environment of the origin) goes to rule 3."""
    secrets = {"api.v2.KEY": "project-rule", "shop.dev.api.v2.KEY": "fallback"}
    assert expand("${api.v2.KEY}", secrets) == "project-rule"


def test_escape_gives_a_literal_reference_text() -> None:
    """$${ produces a literal ${ and what follows is not expanded."""
    assert expand("echo $${HOME} and ${A}", {"shop.dev.A": "a"}) == "echo ${HOME} and a"


def test_escape_without_closing_brace_is_literal() -> None:
    """An escaped ${ needs no closing brace, since it is not a reference."""
    assert expand("cost $${ 5", {}) == "cost ${ 5"


def test_nested_references_expand_recursively() -> None:
    """A referenced value that holds references is expanded too, across environments."""
    secrets = {
        "shop.dev.URL": "https://${HOST}:${prod.PORT}",
        "shop.dev.HOST": "${billing.live.HOST}",
        "billing.live.HOST": "pay.example",
        "shop.prod.PORT": "${PORT_NUMBER}",
        "shop.prod.PORT_NUMBER": "443",
    }
    assert expand("${URL}/path", secrets) == "https://pay.example:443/path"


def test_escape_in_a_referenced_value_stays_literal() -> None:
    """An escape inside a referenced value is decoded once and not expanded again."""
    assert expand("${A}", {"shop.dev.A": "$${B}", "shop.dev.B": "b"}) == "${B}"


def test_each_referenced_secret_is_looked_up_once() -> None:
    """Within one expansion a secret used many times is read from the source only once."""
    source = DictSource(
        {"shop.dev.A": "${C}${C}", "shop.dev.B": "${C}", "shop.dev.C": "c"}, ENVIRONMENTS
    )
    result = expand_value("${A}${B}${A}${C}", origin=ORIGIN, source=source)
    assert result == "cccccc"
    assert set(source.lookups.values()) == {1}
    assert ORIGIN not in source.lookups


def test_self_reference_is_a_cycle() -> None:
    """A value that refers to its own secret is refused with the cycle spelled out."""
    error = expand_error("${DATABASE_URL}", {})
    assert error.message == "reference cycle: shop.dev.DATABASE_URL -> shop.dev.DATABASE_URL"
    assert error.field == "reference"


def test_three_secret_cycle_names_the_chain() -> None:
    """A cycle through three secrets is refused with the whole chain in order."""
    secrets = {"shop.dev.A": "${prod.B}", "shop.prod.B": "${shop.dev.C}", "shop.dev.C": "${A}"}
    error = expand_error("x${A}", secrets)
    assert error.message == (
        "reference cycle: shop.dev.A -> shop.prod.B -> shop.dev.C -> shop.dev.A"
    )


def test_missing_secret_names_the_resolved_reference() -> None:
    """A reference to a secret that does not exist names the text, its holder and the target."""
    error = expand_error("${prod.NOPE}", {})
    assert error.message == (
        "reference ${prod.NOPE} in shop.dev.DATABASE_URL points to shop.prod.NOPE, "
        "which does not exist"
    )
    assert error.field == "reference"


def test_missing_secret_in_a_nested_value_names_the_nested_holder() -> None:
    """A missing secret deep in the chain is reported against the value that referred to it."""
    error = expand_error("${A}", {"shop.dev.A": "${B}"})
    assert error.message == (
        "reference ${B} in shop.dev.A points to shop.dev.B, which does not exist"
    )


def test_unterminated_reference_is_a_syntax_error() -> None:
    """A ${ with no closing brace is refused as bad value syntax, with its position."""
    error = expand_error("abc${KEY", {})
    assert error.field == "value"
    assert 'has "${" at character 3 with no closing "}"' in error.message
    assert "$${" in error.message


def test_empty_reference_is_a_syntax_error() -> None:
    """An empty ${} is refused as bad value syntax."""
    error = expand_error("a${}b", {})
    assert error.field == "value"
    assert "empty reference" in error.message


@pytest.mark.parametrize("text", ["a b", "9abc", "..", "a/../b", "x" * 257, "a\x00b", "/a"])
def test_reference_text_must_be_a_key_name(text: str) -> None:
    """A reference whose text breaks the key name rule is refused without echoing the text."""
    error = expand_error("pre ${" + text + "} post", {})
    assert error.field == "reference"
    assert "not a valid key name" in error.message
    assert "${" + text + "}" not in error.message
    assert text[:3] not in error.message.replace('".."', "")


def test_depth_limit_stops_long_chains() -> None:
    """A chain longer than max_depth is refused; one exactly max_depth long expands."""
    secrets = {f"shop.dev.K{i}": f"${{K{i + 1}}}" for i in range(1, 5)}
    secrets["shop.dev.K5"] = "end"
    assert expand("${K1}", secrets, max_depth=5) == "end"
    error = expand_error("${K1}", secrets, max_depth=4)
    assert "deeper than the limit of 4" in error.message
    assert error.field == "reference"


def test_depth_limit_holds_for_memoised_secrets() -> None:
    """A secret already expanded still counts its own depth when reached again deeper down."""
    secrets = {
        "shop.dev.SHORT": "${LEAF}",
        "shop.dev.LONG1": "${LONG2}",
        "shop.dev.LONG2": "${SHORT}",
        "shop.dev.LEAF": "leaf",
    }
    assert expand("${SHORT}${LONG1}", secrets, max_depth=4) == "leafleaf"
    error = expand_error("${SHORT}${LONG1}", secrets, max_depth=3)
    assert "deeper than the limit of 3" in error.message


SECRET_VALUE = "hunter2-S3CR3T"


@pytest.mark.parametrize(
    ("secrets", "max_depth", "kind"),
    [
        ({"shop.dev.A": SECRET_VALUE + "${MISSING}"}, 16, "does not exist"),
        (
            {"shop.dev.A": SECRET_VALUE + "${B}", "shop.dev.B": SECRET_VALUE + "${A}"},
            16,
            "reference cycle",
        ),
        ({"shop.dev.A": SECRET_VALUE + "${unterminated"}, 16, "no closing"),
        ({"shop.dev.A": SECRET_VALUE + "${}"}, 16, "empty reference"),
        ({"shop.dev.A": SECRET_VALUE + "${bad name}"}, 16, "not a valid key name"),
        (
            {"shop.dev.A": SECRET_VALUE + "${B}", "shop.dev.B": SECRET_VALUE + "${C}"},
            1,
            "deeper than the limit of 1",
        ),
    ],
)
def test_errors_never_contain_secret_values(
    secrets: dict[str, str], max_depth: int, kind: str
) -> None:
    """Whatever goes wrong, no referenced or origin value appears in the error message."""
    with pytest.raises(InvalidInput) as caught:
        expand(SECRET_VALUE + "${A}", secrets, max_depth=max_depth)
    assert kind in caught.value.message
    assert "hunter2" not in caught.value.message
    assert "hunter2" not in str(caught.value)
    assert "hunter2" not in repr(caught.value.to_dict())


def test_text_of_a_broken_reference_is_not_echoed() -> None:
    """A password that merely looks like a reference does not leak into the message."""
    error = expand_error("p${a-s$s w0rd}", {})
    assert "s w0rd" not in error.message


def test_references_in_lists_texts_in_order_skipping_escapes() -> None:
    """references_in gives each reference text in order, duplicates kept, escapes skipped."""
    value = "${db/password} $${HOME} ${prod.API_KEY}-${db/password}"
    assert references_in(value) == ["db/password", "prod.API_KEY", "db/password"]


def test_references_in_refuses_bad_syntax() -> None:
    """references_in reports an unterminated reference like expand_value does."""
    with pytest.raises(InvalidInput) as caught:
        references_in("${A")
    assert caught.value.field == "value"


@given(st.text(alphabet=st.characters(blacklist_characters="$"), max_size=50))
def test_text_without_dollar_is_never_changed(value: str) -> None:
    """Any text with no $ expands to itself and holds no references."""
    assert expand(value, {}) == value
    assert references_in(value) == []


@given(st.text(max_size=50))
def test_escaped_text_expands_to_itself(text: str) -> None:
    """Escaping every ${ in any text makes expansion return the text unchanged."""
    assume("$${" not in text)
    escaped = text.replace("${", "$${")
    assert expand(escaped, {}) == text

"""What a user sees when something goes wrong: the message on stderr and the exit code, on each
backend, and that nothing changed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.harness import Cli, Database, failed, free_port, start_server, unique_name

OK, INVALID_INPUT, NOT_FOUND, UNAUTHENTICATED, CONFLICT, UNREACHABLE = 0, 2, 3, 4, 5, 6
COMMAND_NOT_FOUND = 127
DEV = "development"


@pytest.fixture
def project(cli: Cli) -> str:
    """A new project on the module's server."""
    name = unique_name("err")
    result = cli("projects", "create", name)
    assert result.returncode == OK, result.stderr
    return name


INVALID_KEYS = [
    ("a/../b", 'must not contain ".."'),
    ("db//password", "must not have an empty segment"),
    (" DB_PASSWORD", "must not start or end with whitespace"),
    ("DB\tPASSWORD", "must not contain control characters; found control character U+0009"),
    ("9lives", 'segment "9lives" must start with a letter or underscore'),
    ("k" * 257, "is 257 characters long; the limit is 256"),
]


def test_invalid_key_names_are_refused_with_the_rule(cli: Cli, project: str) -> None:
    """Each invalid key name exits 2 with a message naming the key and its rule; nothing changes."""
    attempts = cli.many(
        *(("secrets", "set", key, "value", "-p", project, "-e", DEV) for key, _ in INVALID_KEYS)
    )
    for (_key, rule), result in zip(INVALID_KEYS, attempts, strict=True):
        stderr = failed(result, INVALID_INPUT)
        assert stderr.startswith("error [key]: key "), stderr
        assert rule in stderr, stderr
    listed = cli("secrets", "list", "-p", project, "-e", DEV, "--json")
    assert json.loads(listed.stdout) == {"secrets": []}


def test_invalid_key_name_error_as_json(cli: Cli, project: str) -> None:
    """With --json the error is a JSON object on stderr with code, field and message."""
    stderr = failed(cli("secrets", "set", "a/../b", "v", "-p", project, "-e", DEV, "--json"), 2)
    assert json.loads(stderr) == {
        "error": {"code": "invalid_input", "field": "key", "message": 'key must not contain ".."'}
    }


def test_unknown_project_exits_3(cli: Cli) -> None:
    """Reading from a project that does not exist exits 3 and names the project."""
    stderr = failed(cli("secrets", "get", "K", "-p", "no-such-project", "-e", DEV), NOT_FOUND)
    assert stderr == "error [project]: project 'no-such-project' not found\n"


def test_unknown_environment_exits_3(cli: Cli, project: str) -> None:
    """Reading from an environment that does not exist exits 3 and names it."""
    stderr = failed(cli("secrets", "get", "K", "-p", project, "-e", "nope"), NOT_FOUND)
    assert "environment 'nope' not found" in stderr


def test_bad_token_exits_4_without_hinting_at_existence(cli: Cli, project: str) -> None:
    """A wrong token exits 4 with the same message whether or not the project exists."""
    intruder = cli.with_env(COFFER_TOKEN="coffer_boot_notavalidtoken_000000")
    existing = failed(intruder("secrets", "get", "K", "-p", project, "-e", DEV), UNAUTHENTICATED)
    missing = failed(intruder("secrets", "get", "K", "-p", "nope", "-e", DEV), UNAUTHENTICATED)
    assert "token" in existing
    assert existing == missing


def test_no_token_at_all_exits_4_and_says_how_to_log_in(local_cli: Cli) -> None:
    """With neither COFFER_TOKEN nor a login the CLI says how to get a token and exits 4."""
    anyone = local_cli.with_env(COFFER_ADDR=f"http://127.0.0.1:{free_port()}")
    stderr = failed(anyone("projects", "list"), UNAUTHENTICATED)
    assert "coffer login" in stderr and "COFFER_TOKEN" in stderr


def test_server_down_exits_6_naming_the_address(local_cli: Cli) -> None:
    """When nothing listens at COFFER_ADDR the CLI exits 6 and names the address it tried."""
    addr = f"http://127.0.0.1:{free_port()}"
    user = local_cli.with_env(COFFER_ADDR=addr, COFFER_TOKEN="coffer_boot_whatever_0000")
    stderr = failed(user("projects", "list"), UNREACHABLE)
    assert f"cannot reach the coffer server at {addr}" in stderr
    assert "COFFER_ADDR" in stderr


def test_run_refuses_two_keys_for_one_variable(cli: Cli, project: str, tmp_path: Path) -> None:
    """`coffer run` exits 2 naming both keys when two map to one variable, and runs nothing."""
    assert cli("secrets", "set", "db/password", "one", "-p", project, "-e", DEV).returncode == 0
    assert cli("secrets", "set", "DB_PASSWORD", "two", "-p", project, "-e", DEV).returncode == 0
    marker = tmp_path / "ran"
    child = f"open({str(marker)!r}, 'w').close()"
    result = cli("run", "-p", project, "-e", DEV, "--", "python", "-c", child)
    stderr = failed(result, INVALID_INPUT)
    assert '"DB_PASSWORD" and "db/password" both map to environment variable DB_PASSWORD' in stderr
    assert not marker.exists()


def test_run_refuses_a_missing_reference(cli: Cli, project: str, tmp_path: Path) -> None:
    """`coffer run` exits 2 naming the missing reference, and runs nothing."""
    assert cli("secrets", "set", "URL", "x${NOPE}", "-p", project, "-e", DEV).returncode == 0
    marker = tmp_path / "ran"
    child = f"open({str(marker)!r}, 'w').close()"
    stderr = failed(cli("run", "-p", project, "-e", DEV, "--", "python", "-c", child), 2)
    assert "reference ${NOPE}" in stderr and "does not exist" in stderr
    assert not marker.exists()


def test_reference_cycle_is_a_clear_error(cli: Cli, project: str) -> None:
    """A reference cycle makes get --expand and export exit 2 naming the cycle."""
    for result in cli.many(
        ("secrets", "set", "A", "${B}", "-p", project, "-e", DEV),
        ("secrets", "set", "B", "x-${A}", "-p", project, "-e", DEV),
    ):
        assert result.returncode == OK, result.stderr
    expanded, exported = cli.many(
        ("secrets", "get", "A", "-p", project, "-e", DEV, "--expand"),
        ("export", "-p", project, "-e", DEV),
    )
    cycle = f"reference cycle: {project}.{DEV}.A -> {project}.{DEV}.B -> {project}.{DEV}.A"
    assert failed(expanded, INVALID_INPUT) == f"error [reference]: {cycle}\n"
    assert failed(exported, INVALID_INPUT) == f"error [reference]: {cycle}\n"


def test_import_of_a_bad_file_changes_nothing(cli: Cli, project: str, tmp_path: Path) -> None:
    """An import whose second line is not KEY=value exits 2 naming the line and imports nothing."""
    env_file = tmp_path / "bad.env"
    env_file.write_text("GOOD=1\nnot an assignment=2\n")
    stderr = failed(cli("import", str(env_file), "-p", project, "-e", DEV), INVALID_INPUT)
    assert stderr.startswith("error [line 2]: line 2 is not a KEY=value assignment")
    listed = cli("secrets", "list", "-p", project, "-e", DEV, "--json")
    assert json.loads(listed.stdout) == {"secrets": []}


def test_run_unknown_command_exits_127(cli: Cli, project: str) -> None:
    """`coffer run -- no-such-command` exits 127 and names the command."""
    result = cli("run", "-p", project, "-e", DEV, "--", "no-such-command-e2e", "--flag")
    assert failed(result, COMMAND_NOT_FOUND) == "error: command not found: no-such-command-e2e\n"


def test_init_twice_fails_and_leaves_the_vault_usable(
    fresh_database: Database, local_cli: Cli, tmp_path: Path
) -> None:
    """A second `coffer init` in the same directory exits 5 and the first vault keeps working."""
    vault = tmp_path / "vault"
    init_cli = local_cli.with_env(COFFER_DATABASE_URL=fresh_database.url_for(vault))
    first = init_cli("init", "--dir", str(vault), "--json")
    assert first.returncode == OK, first.stderr
    token = json.loads(first.stdout)["token"]
    key_before = (vault / "root.key").read_bytes()

    stderr = failed(init_cli("init", "--dir", str(vault)), CONFLICT)
    assert stderr == "error: this vault is already initialised\n"
    assert (vault / "root.key").read_bytes() == key_before

    server = start_server(
        vault, fresh_database.url_for(vault), tmp_path / "server.log", local_cli.cwd
    )
    try:
        assert server.token is None  # the vault existed: no new bootstrap token
        user = local_cli.with_env(COFFER_ADDR=server.addr, COFFER_TOKEN=token)
        assert user("projects", "create", "after").returncode == OK
        listed = user("projects", "list", "--json")
        assert [p["name"] for p in json.loads(listed.stdout)["projects"]] == ["after"]
    finally:
        server.stop()

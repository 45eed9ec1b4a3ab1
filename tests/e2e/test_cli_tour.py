"""The newcomer's tour of the README, typed into the CLI against a real server, on each backend;
then proof that none of the values it stored reached the server's log or the raw database."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from tests.e2e.harness import Cli, Database, ServerProcess, ok, ok_json, unique_name

DEV, STAGING, PROD = "development", "staging", "production"


def summary_line(stdout: str, label: str) -> str:
    """Returns the comma-separated items after ``label`` in a created/updated/skipped report."""
    for line in stdout.splitlines():
        if line.strip().startswith(label):
            return line.strip()[len(label) :].strip()
    raise AssertionError(f"no {label!r} line in:\n{stdout}")


@dataclass
class TourValues:
    """The distinctive values the tour stored (none may leak), and where it stored them."""

    project: str
    marker: str
    values: dict[str, str] = field(default_factory=dict)

    def new(self, name: str) -> str:
        """Returns a new distinctive value, remembered under ``name``."""
        value = f"{name}-{self.marker}-{uuid.uuid4().hex[:6]}"
        self.values[name] = value
        return value


def take_the_tour(cli: Cli, server: ServerProcess, workdir: Path) -> TourValues:
    """Walks the README tour, asserting what the user sees at each step; returns the values.

    Commands that do not depend on each other run together (``Cli.many``), as from several
    terminals: the tour stays readable and costs fewer Python start-ups in a row."""
    tour = TourValues(project=unique_name("shop"), marker=f"zq{uuid.uuid4().hex[:10]}")
    p = tour.project
    dev, prod, staging = ("-p", p, "-e", DEV), ("-p", p, "-e", PROD), ("-p", p, "-e", STAGING)

    # Log in once; from then on the CLI finds the server and token in its config file.
    user = cli.with_env(COFFER_ADDR=None, COFFER_TOKEN=None)
    assert server.token is not None
    out = ok(user("login", "--token", server.token, "--addr", server.addr))
    assert f"Logged in to {server.addr}" in out
    assert str(user.config_file) in out
    assert server.token not in out
    assert user.config_file.stat().st_mode & 0o777 == 0o600
    assert json.loads(user.config_file.read_text()) == {"addr": server.addr, "token": server.token}

    # Projects.
    assert ok(user("projects", "create", p)) == f"Created project {p} ({DEV}, {STAGING}, {PROD})\n"
    table, listed, envs = user.many(
        ("projects", "list"), ("projects", "list", "--json"), ("envs", "list", "-p", p, "--json")
    )
    assert p in ok(table)
    assert p in [project["name"] for project in ok_json(listed)["projects"]]
    assert [env["name"] for env in ok_json(envs)["environments"]] == [DEV, STAGING, PROD]

    # Secrets: one from the command line, its next version from stdin, then a few more.
    dev_pw_1, dev_pw_2 = tour.new("dev-pw-1"), tour.new("dev-pw-2")
    out = ok(user("secrets", "set", "db/password", dev_pw_1, *dev, "--comment", "first password"))
    assert out == "Created db/password (version 1)\n"
    set_from_stdin = ("secrets", "set", "db/password", "-", *dev, "-c", "rotated by hand", "--json")
    written = ok_json(user(*set_from_stdin, input=dev_pw_2 + "\n"))
    assert (written["outcome"], written["version"]) == ("updated", 2)
    assert dev_pw_2 not in json.dumps(written)
    dev_api, only_dev = tour.new("dev-api"), tour.new("only-dev")
    prod_pw, prod_api = tour.new("prod-pw"), tour.new("prod-api")
    dsn_raw = "postgres://app:${db/password}@db/${production.API_KEY}"
    for result in user.many(
        ("secrets", "set", "API_KEY", dev_api, *dev),
        ("secrets", "set", "ONLY_DEV", only_dev, *dev),
        ("secrets", "set", "DSN", dsn_raw, *dev, "-c", "uses references"),
        ("secrets", "set", "db/password", prod_pw, *prod),
        ("secrets", "set", "API_KEY", prod_api, *prod),
    ):
        assert ok(result).startswith("Created ")

    # Reading: current value (stdin's trailing newline dropped), a past version, JSON, the
    # key list, the history (versions and comments, never values), references raw and expanded.
    current, first, got, keys, key_table, history_table, history, dsn, dsn_expanded = user.many(
        ("secrets", "get", "db/password", *dev),
        ("secrets", "get", "db/password", *dev, "--version", "1"),
        ("secrets", "get", "db/password", *dev, "--json"),
        ("secrets", "list", *dev, "--json"),
        ("secrets", "list", *dev),
        ("secrets", "history", "db/password", *dev),
        ("secrets", "history", "db/password", *dev, "--json"),
        ("secrets", "get", "DSN", *dev),
        ("secrets", "get", "DSN", *dev, "--expand"),
    )
    assert ok(current) == dev_pw_2 + "\n"
    assert ok(first) == dev_pw_1 + "\n"
    got_json = ok_json(got)
    assert got_json == {
        **got_json,
        "key": "db/password",
        "version": 2,
        "value": dev_pw_2,
        "comment": "rotated by hand",
    }
    listed_keys = [secret["key"] for secret in ok_json(keys)["secrets"]]
    assert sorted(listed_keys) == ["API_KEY", "DSN", "ONLY_DEV", "db/password"]
    assert "ONLY_DEV" in ok(key_table) and dev_pw_2 not in key_table.stdout
    out = ok(history_table)
    assert "first password" in out and "rotated by hand" in out
    assert dev_pw_1 not in out and dev_pw_2 not in out
    history_json = ok_json(history)
    assert [(v["version"], v["comment"]) for v in history_json["versions"]] == [
        (2, "rotated by hand"),
        (1, "first password"),
    ]
    assert "value" not in json.dumps(history_json)
    assert ok(dsn) == dsn_raw + "\n"
    dsn_dev = f"postgres://app:{dev_pw_1}@db/{prod_api}"
    assert ok(dsn_expanded) == f"postgres://app:{dev_pw_2}@db/{prod_api}\n"

    # Rollback writes version 3 with version 1's value.
    out = ok(user("secrets", "rollback", "db/password", "--version", "1", *dev))
    assert out == "Rolled db/password back to version 1 (now version 3)\n"
    assert ok(user("secrets", "get", "db/password", *dev)) == dev_pw_1 + "\n"

    # Diff names keys, never values.
    table, as_json = user.many(
        ("diff", "-p", p, "--from", DEV, "--to", PROD),
        ("diff", "-p", p, "--from", DEV, "--to", PROD, "--json"),
    )
    out = ok(table)
    assert summary_line(out, f"only in {DEV}") == "DSN, ONLY_DEV"
    assert summary_line(out, f"only in {PROD}") == "-"
    assert summary_line(out, "different") == "API_KEY, db/password"
    assert not any(value in out for value in tour.values.values())
    diff = ok_json(as_json)
    assert diff == {
        **diff,
        "only_in_from": ["DSN", "ONLY_DEV"],
        "only_in_to": [],
        "different": ["API_KEY", "db/password"],
        "same": [],
    }
    assert not any(value in as_json.stdout for value in tour.values.values())

    # Promote: a dry run reports and writes nothing; --keys picks; --overwrite replaces.
    promote = ("promote", "-p", p, "--from", DEV, "--to", PROD)
    out = ok(user(*promote, "--dry-run"))
    assert out.startswith(f"Would promote {p}: {DEV} -> {PROD}")
    assert summary_line(out, "created") == "DSN, ONLY_DEV"
    assert summary_line(out, "updated") == "-"
    assert summary_line(out, "skipped") == "API_KEY, db/password"
    prod_keys = ok_json(user("secrets", "list", *prod, "--json"))
    assert sorted(secret["key"] for secret in prod_keys["secrets"]) == ["API_KEY", "db/password"]
    out = ok(user(*promote, "--keys", "ONLY_DEV"))
    assert out.startswith(f"Promoted {p}: {DEV} -> {PROD}")
    assert [summary_line(out, label) for label in ("created", "updated", "skipped")] == [
        "ONLY_DEV",
        "-",
        "-",
    ]
    promoted = ok_json(
        user(*promote, "--keys", "DSN,db/password,ONLY_DEV", "--overwrite", "--json")
    )
    assert (promoted["created"], promoted["updated"], promoted["skipped"]) == (
        ["DSN"],
        ["db/password"],
        ["ONLY_DEV"],
    )
    # Production now holds the promoted values; the promoted reference resolves there.
    production = json.loads(ok(user("export", *prod, "--format", "json")))
    assert production == {
        "API_KEY": prod_api,
        "DSN": dsn_dev,
        "ONLY_DEV": only_dev,
        "db/password": dev_pw_1,
    }

    # Export in each format, references expanded.
    expected = {"API_KEY": dev_api, "DSN": dsn_dev, "ONLY_DEV": only_dev, "db/password": dev_pw_1}
    dotenv, as_json, as_yaml, with_flag = user.many(
        ("export", *dev, "--format", "dotenv"),
        ("export", *dev, "--format", "json"),
        ("export", *dev, "--format", "yaml"),
        ("export", *dev, "--json"),
    )
    assert ok(dotenv).splitlines() == [
        f"API_KEY='{dev_api}'",
        f"DB_PASSWORD='{dev_pw_1}'",
        f"DSN='{dsn_dev}'",
        f"ONLY_DEV='{only_dev}'",
    ]
    assert ok_json(as_json) == expected
    assert yaml.safe_load(ok(as_yaml)) == expected
    assert ok_json(with_flag) == expected

    # Import a .env file and a JSON file into staging.
    imported_a, imported_b, imported_c = tour.new("env-a"), tour.new("env b"), tour.new("json-c")
    env_file = workdir / "app.env"
    env_file.write_text(
        f'# from the old app\nIMPORTED_A={imported_a}\nexport IMPORTED_B="{imported_b}"\n'
    )
    out = ok(user("import", str(env_file), *staging))
    assert out.startswith(f"Imported into {p}/{STAGING}:")
    assert summary_line(out, "created") == "IMPORTED_A, IMPORTED_B"
    json_file = workdir / "app.json"
    json_file.write_text(json.dumps({"cache": {"url": imported_c}, "IMPORTED_A": imported_a}))
    imported = ok_json(user("import", str(json_file), *staging, "--json"))
    assert imported == {"created": ["cache/url"], "updated": [], "unchanged": ["IMPORTED_A"]}
    staged = json.loads(ok(user("export", *staging, "--format", "json")))
    assert staged == {"IMPORTED_A": imported_a, "IMPORTED_B": imported_b, "cache/url": imported_c}

    # Run a program with the secrets: it sees them (expanded) and its exit code comes back.
    child = (
        "import os, sys; print(os.environ['DB_PASSWORD']); print(os.environ['DSN']); "
        "sys.exit(int(os.environ['EXIT_CODE']))"
    )
    result = user.with_env(EXIT_CODE="7")("run", *dev, "--", "python", "-c", child)
    assert result.returncode == 7, result.stderr
    assert result.stdout == f"{dev_pw_1}\n{dsn_dev}\n"

    # The rest of the commands that print data speak JSON too.
    scratch = unique_name("scratch")
    created_env, rolled, deleted, who, created_project = user.many(
        ("envs", "create", "qa", "-p", p, "--json"),
        ("secrets", "rollback", "API_KEY", "--version", "1", *dev, "--json"),
        ("secrets", "delete", "ONLY_DEV", *prod, "--json"),
        ("login", "--token", server.token, "--addr", server.addr, "--json"),
        ("projects", "create", scratch, "--json"),
    )
    assert ok_json(created_env)["name"] == "qa"
    assert ok_json(rolled)["version"] == 2
    assert ok_json(deleted)["versions_destroyed"] == 1
    assert ok_json(who)["addr"] == server.addr
    assert ok_json(created_project)["name"] == scratch
    deleted_env, deleted_project = user.many(
        ("envs", "delete", "qa", "-p", p, "-y", "--json"),
        ("projects", "delete", scratch, "-y", "--json"),
    )
    assert ok_json(deleted_env) == {"environment": "qa", "deleted": True}
    assert ok_json(deleted_project) == {"project": scratch, "deleted": True}
    tour.values["DSN expanded"] = dsn_dev
    return tour


@pytest.fixture(scope="module")
def tours() -> dict[str, TourValues]:
    """The tour taken on each module server, keyed by its address."""
    return {}


def test_newcomer_tour(
    cli: Cli, server: ServerProcess, tmp_path: Path, tours: dict[str, TourValues]
) -> None:
    """A newcomer logs in, stores, reads, versions, diffs, promotes, exports, imports and runs."""
    tours[server.addr] = take_the_tour(cli, server, tmp_path)


def test_no_value_reaches_logs_or_database_files(
    cli: Cli,
    server: ServerProcess,
    module_database: Database,
    tmp_path: Path,
    tours: dict[str, TourValues],
) -> None:
    """After the tour no stored value is in the server's debug/access log or the raw database."""
    tour = tours.get(server.addr) or take_the_tour(cli, server, tmp_path)
    values = [value.encode() for value in tour.values.values()]
    log = server.log_bytes()
    # The log is the real one: it holds access lines for the tour's requests.
    assert f"/api/v1/projects/{tour.project}/environments/".encode() in log
    assert [value for value in values if value in log] == []

    stored: list[tuple[str, bytes]] = [
        (path.name, path.read_bytes())
        for path in sorted(server.directory.iterdir())
        if path.is_file()
    ]
    if module_database.is_sqlite:
        names = [name for name, _ in stored]
        assert "coffer.db" in names and "root.key" in names
    else:
        stored.append(("postgresql schema", module_database.dump_text().encode()))
    everything = b"".join(data for _, data in stored)
    # The database is really there: key names are stored in the clear, values are not.
    assert b"ONLY_DEV" in everything
    assert [(name, value) for name, data in stored for value in values if value in data] == []
    # The bootstrap token is stored only as a hash, and the log shows it only in the banner
    # of the first start (the token line and the `coffer login` hint), never per request.
    assert server.token is not None and server.token.encode() not in everything
    assert log.count(server.token.encode()) == 2


def test_export_to_an_existing_file_makes_it_private(cli: Cli, tmp_path: Path) -> None:
    """`coffer export -o FILE` over an existing world-readable file leaves it mode 0600."""
    project = unique_name("out")
    ok(cli("projects", "create", project))
    ok(cli("secrets", "set", "TOKEN", "abc", "-p", project, "-e", DEV))
    target = tmp_path / "app.env"
    target.write_text("")
    target.chmod(0o644)
    ok(cli("export", "-p", project, "-e", DEV, "-o", str(target)))
    assert target.read_text() == "TOKEN='abc'\n"
    assert target.stat().st_mode & 0o777 == 0o600

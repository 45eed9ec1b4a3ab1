"""The inventory and policies as a user types them, against a real ``coffer server`` on
SQLite and PostgreSQL: a policy existing secrets break is refused then accepted, a write
without the required fields is refused naming the rule, writes carry their metadata, and the
inventory comes out as a table, spreadsheet-safe CSV and JSON."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from tests.e2e.harness import Cli, ok, ok_json, unique_name


def test_policies_refuse_writes_and_the_inventory_exports(cli: Cli, tmp_path: Path) -> None:
    """The tour of inventory and policies: refusal with the secrets named, explicit
    acceptance, a refused write naming the rule and its fix, metadata set with the write and
    afterwards, ``policy check`` failing then passing, and CSV/JSON/table output."""
    p = unique_name("inv")
    prod = ("-p", p, "-e", "production")
    assert ok(cli("projects", "create", p)).startswith(f"Created project {p}")
    assert ok(cli("secrets", "set", "DB_URL", "postgres://x", *prod)) == (
        "Created DB_URL (version 1)\n"
    )

    # A policy DB_URL already breaks is refused (exit 5, conflict), then accepted explicitly.
    policy = ("policy", "set", "production", "--require", "owner,sensitivity")
    refused = cli(*policy, "--max-rotation", "90d")
    assert refused.returncode == 5, refused.stderr
    assert f"{p}/production/DB_URL (production requires owner" in refused.stderr
    saved = ok(cli(*policy, "--max-rotation", "90d", "--allow-existing-violations"))
    assert saved.startswith(
        "Saved the production policy: requires owner, sensitivity; rotation at most every 90 days"
    )
    assert f"{p}/production/DB_URL" in saved

    # A write without the required fields is refused naming the rules and the fix; the same
    # write with its metadata, and a fix of DB_URL's metadata, go through.
    write = ("secrets", "set", "NEW_KEY", "v1", *prod)
    bare, check_before = cli.many(write, ("policy", "check"))
    assert bare.returncode != 0 and bare.stdout == ""
    assert "production requires owner" in bare.stderr and "--owner" in bare.stderr
    assert check_before.returncode == 1 and f"{p}/production/DB_URL" in check_before.stdout
    metadata = ("--sensitivity", "SECRET", "--rotate-every", "90d")
    with_metadata, fixed = cli.many(
        (*write, "--owner", "@ops-team", "--description", "signs, stamps", *metadata),
        (
            "inventory",
            "set",
            "DB_URL",
            *prod,
            "--owner",
            "alice@example.com",
            "--sensitivity",
            "internal",
            "--rotate-every",
            "30",
        ),
    )
    assert ok(with_metadata) == "Created NEW_KEY (version 1)\n"
    assert "owner:         alice@example.com" in ok(fixed)

    # Everything complies now; the inventory as CSV, JSON (to a file) and a table.
    out_file = tmp_path / "inventory.json"
    check_after, as_csv, to_file, table, shown = cli.many(
        ("policy", "check"),
        ("inventory", "--project", p, "--format", "csv"),
        ("inventory", "-p", p, "--format", "json", "--out", str(out_file)),
        ("inventory", "--project", p, "--env", "production"),
        ("inventory", "show", "NEW_KEY", *prod, "--json"),
    )
    assert ok(check_after) == "Every secret complies with its environment's policy\n"
    rows = list(csv.DictReader(io.StringIO(ok(as_csv), newline="")))
    assert [(r["environment"], r["key"]) for r in rows] == [
        ("production", "DB_URL"),
        ("production", "NEW_KEY"),
    ]
    assert rows[1]["owner"] == "'@ops-team", "a formula-like cell is neutralised"
    assert rows[1]["description"] == "signs, stamps"
    assert (rows[1]["sensitivity"], rows[1]["rotation_days"]) == ("secret", "90")
    assert rows[0]["violations"] == ""
    ok(to_file)
    exported = json.loads(out_file.read_text())["secrets"]
    assert [(e["key"], e["owner"], e["rotation_days"]) for e in exported] == [
        ("DB_URL", "alice@example.com", 30),
        ("NEW_KEY", "@ops-team", 90),
    ]
    assert f"{p}/production/NEW_KEY" in ok(table)
    assert ok_json(shown)["owner"] == "@ops-team"

    # Policies and settings listed, changed and removed.
    settings, policies = cli.many(
        ("policy", "settings", "--reminder-days", "3", "--json"), ("policy", "list", "--json")
    )
    assert ok_json(settings) == {"root_rotation_approvals": 1, "rotation_reminder_days": 3}
    assert ok_json(policies)["policies"][0]["required_fields"] == ["owner", "sensitivity"]
    assert ok(cli("policy", "delete", "production")) == "Deleted the production policy\n"
    assert ok(cli("secrets", "set", "BARE", "v", *prod)) == "Created BARE (version 1)\n"

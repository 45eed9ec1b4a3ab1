"""`coffer rotation` typed into the CLI against a real server on each backend: a random
rotator is set, run (the new version is printed, never the value), shown and removed; a
flag makes the secret due at once, which `due`, `schedule` and `notify` report; bad input
is refused naming the field. Every command names the secret as KEY -p PROJECT -e ENV, like
`coffer secrets`."""

from __future__ import annotations

import string

from tests.e2e.harness import Cli, failed, ok, ok_json, unique_name

STAGING = "staging"


def test_a_random_rotator_runs_and_a_flag_makes_the_secret_due(cli: Cli) -> None:
    """set -> rotate -> show -> flag -> due/schedule/notify -> remove, as a user types it; a
    length out of range is refused naming it (exit 2)."""
    project = unique_name("rot")
    key = "svc/TOKEN"
    where = f"{project}/{STAGING}/{key}"
    ok(cli("projects", "create", project))
    ok(cli("secrets", "set", key, "first-value", "-p", project, "-e", STAGING))
    set_out = ok(
        cli(
            "rotation", "rotator", "set", key, "-p", project, "-e", STAGING,
            "--kind", "random", "--length", "24", "--alphabet", "hex",
        )
    )  # fmt: skip
    assert f"{where}: random rotator (length 24, alphabet hex); never run" in set_out
    rotated = cli("rotation", "rotate", key, "-p", project, "-e", STAGING)
    assert ok(rotated) == f"Rotated {where} with the random rotator: version 2.\n"
    value = ok(cli("secrets", "get", key, "-p", project, "-e", STAGING)).strip()
    assert len(value) == 24 and set(value) <= set(string.hexdigits.lower())
    assert value not in rotated.stdout + rotated.stderr
    assert ": succeeded" in ok(
        cli("rotation", "rotator", "show", key, "--project", project, "--env", STAGING)
    )

    flagged = cli("rotation", "flag", key, "-p", project, "-e", STAGING, "--note", "pasted in chat")
    assert ok(flagged) == f"Flagged {where} (version 2) for rotation now.\n"
    table = ok(cli("rotation", "due", "--overdue", "--project", project))
    assert "rotate now" in table and "pasted in chat" in table and key in table
    [entry] = ok_json(cli("rotation", "schedule", "--project", project, "--json"))["secrets"]
    assert (entry["key"], entry["state"], entry["rotator"]["kind"]) == (key, "rotate now", "random")
    sent = ok_json(cli("rotation", "notify", "--json"))
    mine = [
        (n["event"], n["key"], n["version"]) for n in sent["notices"] if n["project"] == project
    ]
    assert mine == [("rotation.overdue", key, 2)]

    short = ("--kind", "random", "--length", "8")
    bad = failed(cli("rotation", "rotator", "set", key, "-p", project, "-e", STAGING, *short), 2)
    assert bad.startswith("error [length]: length must be from 16 to 256")
    removed = ok(cli("rotation", "rotator", "remove", key, "-p", project, "-e", STAGING, "--yes"))
    assert removed == f"Removed the random rotator of {where}.\n"
    missing = failed(cli("rotation", "rotate", key, "-p", project, "-e", STAGING), 3)
    assert "no rotator is configured" in missing

"""``coffer scan`` as a user types it: exit codes 0 (clean), 1 (findings) and 2 (errors, naming
the option), standard input, JSON and SARIF reports, ignoring and the baseline, git history, and
never a secret's plaintext on the terminal or in a report."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from coffer.scanner.rules import builtin_rules
from coffer.scanner.samples import generate
from tests.e2e.harness import base_env, free_port, run_coffer

CLEAN, FOUND, ERROR = 0, 1, 2
AWS = builtin_rules().by_id("aws-access-key-id")


def aws_key(seed: int) -> str:
    """A generated fake AWS access key id."""
    return generate(AWS, random.Random(seed))


@pytest.fixture
def home(tmp_path: Path, cache_home: Path) -> Path:
    """A HOME of its own for the CLI, whose cache folder links to the shared one."""
    path = tmp_path / "home"
    path.mkdir()
    (path / ".cache").symlink_to(cache_home, target_is_directory=True)
    return path


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A folder of source files, one of which holds a fake AWS key on line 3."""
    root = tmp_path / "project"
    (root / "src").mkdir(parents=True)
    (root / "src" / "app.py").write_text(f"import os\n\nAWS_KEY = '{aws_key(1)}'\n")
    (root / "README.md").write_text("# demo\n")
    return root


def coffer(
    home: Path, cwd: Path, *args: str, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Runs ``python -m coffer ARGS`` in ``cwd`` with a clean environment."""
    return run_coffer(list(args), base_env(home), input=input, cwd=cwd)


def assert_no_plaintext(result: subprocess.CompletedProcess[str], *secrets: str) -> None:
    """No secret appears in the command's stdout or stderr."""
    for secret in secrets:
        assert secret not in result.stdout
        assert secret not in result.stderr


def test_a_folder_with_a_secret_exits_1_with_the_secret_masked(home: Path, project: Path) -> None:
    """`coffer scan` names file, line, column and rule, masks the key and exits 1; stderr stays
    quiet (no progress bar without a terminal)."""
    result = coffer(home, project, "scan")
    assert result.returncode == FOUND, result.stderr
    assert "src/app.py:3:12" in result.stdout
    assert "aws-access-key-id" in result.stdout
    assert "AKIA" + "*" * 16 in result.stdout
    assert result.stderr == ""
    assert_no_plaintext(result, aws_key(1))


def test_a_clean_folder_exits_0(home: Path, tmp_path: Path) -> None:
    """A folder without secrets exits 0 and says so."""
    (tmp_path / "clean").mkdir()
    (tmp_path / "clean" / "main.py").write_text("print('hello')\n")
    result = coffer(home, tmp_path, "scan", "clean")
    assert result.returncode == CLEAN, result.stdout + result.stderr
    assert "No secrets found" in result.stdout


def test_standard_input(home: Path, tmp_path: Path) -> None:
    """`coffer scan -` reads standard input and names it <stdin>."""
    key = aws_key(2)
    result = coffer(home, tmp_path, "scan", "-", "--format", "json", input=f"x\nkey={key}\n")
    assert result.returncode == FOUND, result.stderr
    findings = json.loads(result.stdout)["findings"]
    assert [(f["path"], f["line"], f["rule_id"]) for f in findings] == [
        ("<stdin>", 2, "aws-access-key-id")
    ]
    assert_no_plaintext(result, key)
    clean = coffer(home, tmp_path, "scan", "-", input="nothing to see\n")
    assert clean.returncode == CLEAN


def test_json_and_sarif_reports(home: Path, project: Path) -> None:
    """--format json prints parseable JSON with the finding; --format sarif --output writes a
    SARIF 2.1.0 file, prints a summary on stderr and still exits 1."""
    result = coffer(home, project, "scan", "--format", "json")
    assert result.returncode == FOUND
    report = json.loads(result.stdout)
    assert [(f["path"], f["line"], f["column"]) for f in report["findings"]] == [
        ("src/app.py", 3, 12)
    ]
    sarif = coffer(home, project, "scan", "--format", "sarif", "--output", "out.sarif")
    assert sarif.returncode == FOUND
    assert sarif.stdout == ""
    assert "1 finding" in sarif.stderr and "out.sarif" in sarif.stderr
    text = (project / "out.sarif").read_text()
    log = json.loads(text)
    assert log["version"] == "2.1.0"
    uris = [
        r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
        for r in log["runs"][0]["results"]
    ]
    assert uris == ["src/app.py"]
    assert aws_key(1) not in text
    assert_no_plaintext(sarif, aws_key(1))


def test_inline_ignore_settings_and_baseline(home: Path, project: Path) -> None:
    """A `coffer:ignore` comment, an [allow] path and a baseline each hide a finding; a new
    secret is still reported once the old one is in the baseline."""
    marked = project / "marked.py"
    marked.write_text(f"KEY = '{aws_key(3)}'  # coffer:ignore\n")
    assert coffer(home, project, "scan", "marked.py").returncode == CLEAN
    settings = project / ".coffer-scan.toml"
    settings.write_text('[allow]\npaths = ["src/"]\n')
    assert coffer(home, project, "scan").returncode == CLEAN
    settings.unlink()
    update = coffer(home, project, "scan", "--update-baseline", ".coffer-baseline")
    assert update.returncode == CLEAN, update.stderr
    assert "1 fingerprints" in update.stderr
    baseline_text = (project / ".coffer-baseline").read_text()
    assert aws_key(1) not in baseline_text
    assert coffer(home, project, "scan", "--baseline", ".coffer-baseline").returncode == CLEAN
    (project / "src" / "new.py").write_text(f"K = '{aws_key(4)}'\n")
    again = coffer(home, project, "scan", "--baseline", ".coffer-baseline")
    assert again.returncode == FOUND
    assert "src/new.py" in again.stdout and "src/app.py" not in again.stdout


def test_git_history_is_scanned_with_commits(home: Path, tmp_path: Path) -> None:
    """`coffer scan --git` finds a key removed from the work tree and names its commit."""
    repo = tmp_path / "repo"
    repo.mkdir()
    env = {**base_env(home), "GIT_AUTHOR_NAME": "Dev", "GIT_AUTHOR_EMAIL": "dev@example.com"}
    env |= {"GIT_COMMITTER_NAME": "Dev", "GIT_COMMITTER_EMAIL": "dev@example.com"}

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", *args], cwd=repo, env=env, check=True, capture_output=True, text=True
        )
        return done.stdout.strip()

    git("init", "-q", "-b", "main")
    (repo / "keys.env").write_text(f"AWS={aws_key(5)}\n")
    git("add", "-A")
    git("commit", "-q", "-m", "oops")
    commit = git("rev-parse", "HEAD")
    (repo / "keys.env").write_text("AWS=\n")
    git("commit", "-q", "-am", "remove")
    assert coffer(home, repo, "scan").returncode == CLEAN
    result = coffer(home, repo, "scan", "--git", "--format", "json")
    assert result.returncode == FOUND, result.stderr
    [finding] = json.loads(result.stdout)["findings"]
    assert (finding["path"], finding["commit"]) == ("keys.env", commit)
    assert_no_plaintext(result, aws_key(5))


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (("scan", "no-such-folder"), "path"),
        (("scan", "--git"), "path"),
        (("scan", "--format", "xml"), "format"),
        (("scan", "--git", "--staged"), "staged"),
        (("scan", "--workers", "0"), "workers"),
        (("scan", "--max-file-size", "huge"), "max-file-size"),
        (("scan", "-", "--git"), "path"),
    ],
)
def test_errors_exit_2_naming_the_option(
    home: Path, tmp_path: Path, args: tuple[str, ...], field: str
) -> None:
    """Bad options, a missing path and git outside a repository exit 2 with `error [field]`."""
    result = coffer(home, tmp_path, *args)
    assert result.returncode == ERROR, result.stdout + result.stderr
    assert result.stderr.startswith(f"error [{field}]: "), result.stderr
    assert result.stdout == ""


def test_a_bad_settings_file_exits_2_naming_the_key(home: Path, project: Path) -> None:
    """An invalid .coffer-scan.toml exits 2 and names the offending key; nothing is scanned."""
    (project / ".coffer-scan.toml").write_text('[scan]\nmax_file_size = "lots"\n')
    result = coffer(home, project, "scan")
    assert result.returncode == ERROR
    assert result.stderr.startswith("error [scan.max_file_size]: "), result.stderr
    assert result.stdout == ""


def test_match_vault_with_no_server_exits_2_without_plaintext(home: Path, project: Path) -> None:
    """--match-vault against an address where no server listens exits 2 and prints no secret."""
    env = base_env(
        home, {"COFFER_ADDR": f"http://127.0.0.1:{free_port()}", "COFFER_TOKEN": "coffer_x"}
    )
    result = run_coffer(["scan", "--match-vault"], env, cwd=project)
    assert result.returncode == ERROR, result.stdout + result.stderr
    assert result.stderr.startswith("error"), result.stderr
    assert_no_plaintext(result, aws_key(1))


# Loaded at start-up by the CLI's Python (through PYTHONPATH) to make a scan fail the way a
# real fault would: a worker process that dies, or a library error quoting the scanned text.
_FAULTS = """
import os

from coffer.scanner import runner
from coffer.scanner.engine import Engine

if os.environ["SCAN_FAULT"] == "worker-dies":
    def _die(batch):
        os._exit(1)

    runner._scan_in_worker = _die
else:
    def _fail(self, data, path):
        raise RuntimeError(data.decode())

    Engine.scan = _fail
"""


@pytest.mark.parametrize(
    ("fault", "workers", "kind"),
    [("worker-dies", "2", "BrokenProcessPool"), ("engine-raises", "1", "RuntimeError")],
)
def test_an_unexpected_failure_exits_2_with_its_kind_only(
    home: Path, tmp_path: Path, project: Path, fault: str, workers: str, kind: str
) -> None:
    """A worker process that dies, or an error no one foresaw, exits 2 (not 1, which means
    'secrets found') with `error: internal error (<kind>)`: no traceback, no message that could
    quote a scanned secret."""
    faults = tmp_path / "faults"
    faults.mkdir()
    (faults / "sitecustomize.py").write_text(_FAULTS)
    for number in range(1100):  # enough files for the worker pool
        (project / f"f{number}.txt").write_text(f"line {number}\n")
    env = base_env(home, {"PYTHONPATH": str(faults), "SCAN_FAULT": fault})
    result = run_coffer(["scan", "--workers", workers, "--no-progress"], env, cwd=project)
    assert result.returncode == ERROR, result.stdout + result.stderr
    assert result.stderr == f"error: internal error ({kind})\n"
    assert result.stdout == ""
    assert_no_plaintext(result, aws_key(1))


@pytest.mark.parametrize(("with_key", "status"), [(True, FOUND), (False, CLEAN)])
def test_a_reader_that_stops_early_leaves_the_scans_exit_code(
    home: Path, project: Path, with_key: bool, status: int
) -> None:
    """`coffer scan | head` where the reader has gone: the exit code is still the scan's (1 for
    findings, 0 for a clean folder, never 1 for the broken pipe itself), and stderr stays empty
    (no broken-pipe traceback)."""
    if not with_key:
        (project / "src" / "app.py").write_text("import os\n")
    process = subprocess.Popen(
        [sys.executable, "-m", "coffer", "scan", "--no-progress"],
        cwd=project,
        env=base_env(home),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # the reader is gone before the report is written
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=60) == status, stderr
    assert stderr == ""

"""`coffer compliance status` and `coffer compliance evidence` typed into the CLI against a
real server: the control table and its exit code, bad dates and a non-empty folder refused
with nothing written, and a pack whose every file is listed in the manifest with its hash,
whose index.html parses and shows the control table with hostile text escaped, whose audit
export verifies with `coffer audit verify` (and fails once tampered with), whose optional PDF
comes from Chromium when there is one, and in which no secret value appears.

One SQLite server for the module: the CLI's side does not depend on the backend, and the
API tests cover the evidence on both backends. The last test is the issue's acceptance: a
demo organization with months of seeded history (`coffer demo seed`), one command, a pack
whose control table shows the demo's broken control and whose export verifies.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import stat
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest

from coffer.cli.demo_history import LEFT_OVERDUE
from tests.e2e.harness import (
    Cli,
    ServerProcess,
    base_env,
    close_database,
    failed,
    ok,
    open_database,
    start_server,
    unique_name,
)

VALUES = ("evidence-e2e-value-9f3a71", "second-e2e-value-22be08")
HOSTILE = '<script>alert("pack")</script>'
PACK_FILES = {
    "index.html",
    "controls.csv",
    "inventory.csv",
    "rotation-history.csv",
    "rotation-schedule.csv",
    "overdue.csv",
    "access-requests.csv",
    "approvals.csv",
    "access-reviews.json",
    "offboardings.csv",
    "key-rotations.csv",
    "data-keys.csv",
    "users-and-roles.csv",
    "permission-matrix.csv",
    "grants.csv",
    "retention-policy.md",
    "evidence.json",
    "audit-export.jsonl",
    "audit-public-key.pem",
    "audit-verify.json",
    "VERIFY.md",
    "manifest.json",
}
CRITERIA = ("CC6.1", "CC6.2", "CC6.3", "CC6.6", "CC6.7", "CC7.1", "CC7.2", "CC8.1")
FAKE_CHROMIUM = """#!/bin/sh
for arg in "$@"; do
  case "$arg" in --print-to-pdf=*) printf '%%PDF-1.4 fake\\n' > "${arg#--print-to-pdf=}";; esac
done
"""


@pytest.fixture(scope="module")
def sqlite_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A real ``coffer server`` on a new SQLite vault for this module."""
    base = tmp_path_factory.mktemp("evidence-server")
    database = open_database("sqlite")
    home = base / "home"
    home.mkdir()
    vault = base / "vault"
    server = start_server(vault, database.url_for(vault), base / "server.log", home)
    assert server.token, server.log_text()
    try:
        yield server
    finally:
        server.stop()
        close_database(database)


@pytest.fixture
def cli(sqlite_server: ServerProcess, tmp_path: Path) -> Cli:
    """The CLI pointed at the module's server with its bootstrap token."""
    home = tmp_path / "home"
    home.mkdir()
    assert sqlite_server.token is not None
    env = base_env(home, {"COFFER_ADDR": sqlite_server.addr, "COFFER_TOKEN": sqlite_server.token})
    return Cli(env, tmp_path)


class Page(HTMLParser):
    """Collects an HTML page's tags (failing on a tag closed out of order), its table
    cells' text, and every script element."""

    VOID = frozenset({"meta", "br", "link", "img", "input", "hr", "rect", "line"})

    def __init__(self) -> None:
        super().__init__()
        self.open: list[str] = []
        self.cells: list[str] = []
        self.scripts = 0
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "script":
            self.scripts += 1
        if tag in ("td", "th"):
            self._cell = []
        if tag not in self.VOID:
            self.open.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        return None

    def handle_endtag(self, tag: str) -> None:
        assert self.open and self.open[-1] == tag, f"</{tag}> closes {self.open[-1:]}"
        self.open.pop()
        if tag in ("td", "th") and self._cell is not None:
            self.cells.append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def today(offset: int = 0) -> str:
    """Today's UTC date, ``offset`` days away."""
    return (datetime.now(tz=UTC).date() + timedelta(days=offset)).isoformat()


def seed(cli: Cli) -> str:
    """A project with two secrets of known values (one described with hostile HTML), one
    of them read; returns the project's name."""
    project = unique_name("evidence")
    ok(cli("projects", "create", project))
    ok(
        cli(
            "secrets",
            "set",
            "DB_PASSWORD",
            VALUES[0],
            "-p",
            project,
            "-e",
            "production",
            "--owner",
            "dba@acme.test",
            "--system",
            "postgres",
            "--description",
            HOSTILE,
            "--sensitivity",
            "secret",
            "--rotate-every",
            "90d",
        )
    )
    ok(cli("secrets", "set", "API_TOKEN", VALUES[1], "-p", project, "-e", "staging"))
    assert VALUES[0] in ok(cli("secrets", "get", "DB_PASSWORD", "-p", project, "-e", "production"))
    return project


def check_manifest(out: Path, *, extra: str | None = None) -> dict[str, str]:
    """Asserts the manifest lists every other file of the pack (not ``extra``, a file that
    was there before) with its size and SHA-256; returns the hashes by name."""
    manifest = json.loads((out / "manifest.json").read_text())
    listed = {entry["path"]: entry for entry in manifest["files"]}
    assert set(listed) == {p.name for p in out.iterdir()} - {"manifest.json", extra}
    for name, entry in listed.items():
        data = (out / name).read_bytes()
        assert entry["sha256"] == hashlib.sha256(data).hexdigest(), name
        assert entry["bytes"] == len(data)
    return {name: entry["sha256"] for name, entry in listed.items()}


def test_status_prints_the_control_table_and_fails_while_a_control_fails(cli: Cli) -> None:
    """The table lists every criterion; a fresh vault's bootstrap token never expires, so
    CC6.6 fails and the command exits 1 (with --json too)."""
    result = cli("compliance", "status")
    assert result.returncode == 1, result.stderr
    for criterion in CRITERIA:
        assert criterion in result.stdout
    assert "bootstrap token 'bootstrap owner'" in result.stdout
    assert "controls pass; failing:" in result.stdout
    as_json = cli("compliance", "status", "--json")
    assert as_json.returncode == 1
    body = json.loads(as_json.stdout)
    assert [c["criterion"] for c in body["controls"]] == list(CRITERIA)
    assert body["summary"]["all_pass"] is False


def test_bad_dates_and_a_non_empty_folder_write_nothing(cli: Cli, tmp_path: Path) -> None:
    """Unparsable or backwards dates, a future end and a non-empty --out exit 2 naming the
    option, before anything is fetched or written; an --out that cannot be made exits 2
    too, leaving no staging folder behind."""
    out = tmp_path / "pack"
    cases = [
        (("--from", "2026-02-30", "--to", today()), "--from: must be a date YYYY-MM-DD"),
        (("--from", today(), "--to", today(-2)), "--from: must be on or before --to"),
        (("--from", today(-3), "--to", today(3)), "--to: must not be later than today"),
    ]
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    unwritable = ("--from", today(-1), "--to", today(), "--out", str(blocker / "pack"))
    results = cli.many(
        *(("compliance", "evidence", *d, "--out", str(out)) for d, _ in cases),
        ("compliance", "evidence", *unwritable),
    )
    for (_, message), result in zip(cases, results[:-1], strict=True):
        assert message in failed(result, 2)
    assert not out.exists()
    assert "--out: cannot write the pack into" in failed(results[-1], 2)
    assert blocker.read_text() == "not a folder"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    stderr = failed(
        cli("compliance", "evidence", "--from", today(-1), "--to", today(), "--out", str(out)), 2
    )
    assert "--out:" in stderr and "--force" in stderr
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".coffer-evidence-")]


def test_the_evidence_pack_is_complete_verifiable_escaped_and_holds_no_value(
    cli: Cli, tmp_path: Path
) -> None:
    """A pack for the last week: every file, hashes in the manifest, index.html with the
    control table and the hostile description escaped, the export verified by `coffer audit
    verify` (and refused once edited), no PDF without Chromium, and no secret value."""
    seed(cli)
    out = tmp_path / "pack"
    no_browser = tmp_path / "empty-bin"  # a PATH with no Chromium, whatever the machine has
    no_browser.mkdir()
    result = cli.with_env(PATH=str(no_browser))(
        "compliance", "evidence", "--from", today(-7), "--to", today(), "--out", str(out), "--pdf"
    )
    assert result.returncode == 0, result.stderr
    assert "audit export: verified:" in result.stdout
    assert "no PDF: no Chromium found on PATH" in result.stderr
    assert {p.name for p in out.iterdir()} == PACK_FILES
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    check_manifest(out)

    html = (out / "index.html").read_text(encoding="utf-8")
    page = Page()
    page.feed(html)
    page.close()
    assert page.open == [] and page.scripts == 0
    for criterion in CRITERIA:
        assert criterion in page.cells
    assert {"PASS", "FAIL"} & set(page.cells)
    assert HOSTILE in page.cells  # shown as text ...
    assert "&lt;script&gt;alert(&#34;pack&#34;)&lt;/script&gt;" in html  # ... because escaped
    assert "<script>" not in html

    with (out / "controls.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["criterion"] for row in rows] == list(CRITERIA)
    with (out / "inventory.csv").open(newline="") as handle:
        inventory = {row["key"]: row for row in csv.DictReader(handle)}
    assert inventory["DB_PASSWORD"]["owner"] == "dba@acme.test"
    assert inventory["DB_PASSWORD"]["rotation_days"] == "90"

    verified = cli(
        "audit",
        "verify",
        "--export",
        str(out / "audit-export.jsonl"),
        "--public-key",
        str(out / "audit-public-key.pem"),
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.startswith("verified: ")
    assert json.loads((out / "audit-verify.json").read_text())["ok"] is True
    assert "coffer audit verify --export audit-export.jsonl" in (out / "VERIFY.md").read_text()
    exported = (out / "audit-export.jsonl").read_bytes()
    assert b"compliance.evidence_exported" in exported
    (out / "audit-export.jsonl").write_bytes(exported.replace(b"DB_PASSWORD", b"DB_PASSWORX", 1))
    tampered = cli(
        "audit",
        "verify",
        "--export",
        str(out / "audit-export.jsonl"),
        "--public-key",
        str(out / "audit-public-key.pem"),
    )
    assert tampered.returncode == 9, tampered.stdout
    assert tampered.stdout.startswith("FAILED: ")

    for path in out.iterdir():
        data = path.read_bytes()
        for value in VALUES:
            assert value.encode() not in data, f"{value} in {path.name}"


def test_pdf_comes_from_chromium_when_one_is_on_path(cli: Cli, tmp_path: Path) -> None:
    """With a Chromium on PATH (a stand-in that writes what --print-to-pdf names),
    --pdf adds report.pdf to the pack and its manifest; --force writes into a used folder."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    browser = bin_dir / "chromium"
    browser.write_text(FAKE_CHROMIUM)
    browser.chmod(0o755)
    with_browser = cli.with_env(PATH=f"{bin_dir}{os.pathsep}{cli.env['PATH']}")
    out = tmp_path / "pack"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    result = with_browser(
        "compliance",
        "evidence",
        "--from",
        today(-1),
        "--to",
        today(),
        "--out",
        str(out),
        "--pdf",
        "--force",
    )
    assert result.returncode == 0, result.stderr
    assert "no PDF" not in result.stderr
    assert (out / "report.pdf").read_bytes().startswith(b"%PDF")
    hashes = check_manifest(out, extra="notes.txt")
    assert "report.pdf" in hashes


def test_a_real_chromium_prints_the_report_to_pdf(cli: Cli, tmp_path: Path) -> None:
    """With the system's Chromium (CI installs it), --pdf prints index.html into a real PDF
    of at least one page."""
    if shutil.which("chromium") is None:
        if os.environ.get("CI"):
            pytest.fail("CI must run the PDF test: install Debian's chromium (.ci/run does)")
        pytest.skip("the PDF report is not tested: chromium is not installed")
    out = tmp_path / "pack"
    result = cli(
        "compliance", "evidence", "--from", today(-1), "--to", today(), "--out", str(out), "--pdf"
    )
    assert result.returncode == 0, result.stderr
    pdf = (out / "report.pdf").read_bytes()
    assert pdf.startswith(b"%PDF") and b"/Type /Page" in pdf
    assert "report.pdf" in check_manifest(out)


def test_a_demo_with_months_of_history_gives_a_readable_verified_pack(tmp_path: Path) -> None:
    """`coffer demo seed` plays three months of history; against its server one command
    writes a pack whose rotation history spans the months, whose control table fails the
    demo's overdue secret by name, and whose export verifies offline."""
    home = tmp_path / "home"
    home.mkdir()
    local = Cli(base_env(home), tmp_path)
    vault = tmp_path / "demo"
    seeded = ok(local("demo", "seed", "--dir", str(vault), "--months", "3"))
    token = seeded.split("coffer login --token ", 1)[1].split()[0]
    server = start_server(vault, None, tmp_path / "server.log", home)
    try:
        cli = Cli(base_env(home, {"COFFER_ADDR": server.addr, "COFFER_TOKEN": token}), tmp_path)
        out = tmp_path / "pack"
        result = cli(
            "compliance", "evidence", "--from", today(-100), "--to", today(), "--out", str(out)
        )
        assert result.returncode == 0, result.stdout + result.stderr
    finally:
        server.stop()
    assert "audit export: verified:" in result.stdout
    check_manifest(out)
    with (out / "controls.csv").open(newline="") as handle:
        controls = {row["criterion"]: row for row in csv.DictReader(handle)}
    assert controls["CC8.1"]["status"] == "fail"
    assert "/".join(LEFT_OVERDUE) in controls["CC8.1"]["reason"]
    with (out / "rotation-history.csv").open(newline="") as handle:
        months = {row["created_at"][:7] for row in csv.DictReader(handle)}
    assert len(months) >= 3
    evidence = json.loads((out / "evidence.json").read_text())
    assert evidence["offboardings"] and evidence["access_reviews"]
    assert evidence["key_rotations"]["events"]
    page = Page()
    page.feed((out / "index.html").read_text(encoding="utf-8"))
    assert "CC8.1" in page.cells and "FAIL" in page.cells

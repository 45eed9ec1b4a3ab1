"""Writes an evidence pack: every file is made in a staging folder next to the output folder
and moved into it only when all of them exist, so a failed run leaves nothing behind. A new
output folder is the staging folder itself, renamed into place at once; into an existing
folder (``--force``) the files are moved one by one, ``manifest.json`` last, and a failure
part-way puts back what was there (or says which files it could not). The
audit export is verified offline with the code ``coffer audit verify`` runs, and the
result recorded in the pack; ``manifest.json`` holds the SHA-256 of every other file."""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coffer import __version__
from coffer.cli.audit_view import report_lines
from coffer.cli.commands.audit import verify_file
from coffer.cli.evidence import pdf as pdf_printer
from coffer.cli.evidence.report import render_index, verify_markdown
from coffer.cli.evidence.tables import CSV_FILES, csv_text
from coffer.crypto.audit_keys import AuditPublicKey
from coffer.domain.errors import InvalidInput

EXPORT = "audit-export.jsonl"
PUBLIC_KEY = "audit-public-key.pem"
VERIFY_COMMAND = f"coffer audit verify --export {EXPORT} --public-key {PUBLIC_KEY}"
MANIFEST = "manifest.json"
PDF = "report.pdf"

OTHER_FILES = (
    ("index.html", "the report for a browser: summary, control table, charts, every section"),
    (PDF, "index.html printed to PDF"),
    ("evidence.json", "every section of the evidence as the server sent it"),
    (
        "access-reviews.json",
        "access reviews of the period: every line, its decision, the signed-off digest",
    ),
    ("retention-policy.md", "the retention settings written out as a policy"),
    (EXPORT, "the signed audit log export (JSONL with checkpoints and proofs)"),
    (PUBLIC_KEY, "the Ed25519 key that signs the log's checkpoints"),
    ("audit-verify.json", "the offline verification of the export when the pack was made"),
    ("VERIFY.md", "how to verify the export and the files, and what that proves"),
    (MANIFEST, "the SHA-256 of every other file"),
)


@dataclass(frozen=True)
class PackResult:
    """What was written: the files, whether the export verified (with the verifier's
    lines), and why there is no PDF when one was asked for and none was made."""

    files: list[str]
    verified: bool
    verify_lines: list[str]
    pdf_problem: str | None


def check_output(out: Path, *, force: bool) -> None:
    """Raises InvalidInput naming ``--out`` when ``out`` is a file, or a folder that is not
    empty (unless ``force``)."""
    if out.exists() and not out.is_dir():
        raise InvalidInput(f"--out: {out} is a file, not a folder", field="out")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise InvalidInput(
            f"--out: {out} is not empty; name a new or empty folder, or add --force to write "
            "the pack's files into it (files of the same name are replaced)",
            field="out",
        )


def _staging(out: Path) -> Path:
    parent = out.resolve().parent
    while not parent.is_dir():
        parent = parent.parent
    return Path(tempfile.mkdtemp(prefix=".coffer-evidence-", dir=parent))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 16):
            digest.update(chunk)
    return digest.hexdigest()


def _json_text(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=False, ensure_ascii=False) + "\n"


def write_pack(
    out: Path,
    evidence: dict[str, Any],
    export_chunks: Iterable[bytes],
    public_key: dict[str, Any],
    *,
    server: str,
    with_pdf: bool,
) -> PackResult:
    """Writes the pack for ``evidence`` into ``out`` (created when missing): the export from
    ``export_chunks`` verified with ``public_key`` (the server's ``/audit/public-key``
    answer), the report, the CSV and JSON files, VERIFY.md and the manifest; with
    ``with_pdf`` a PDF when a Chromium is installed. Raises InvalidInput naming ``--out``
    when the folder cannot be written (nothing is left behind)."""
    try:
        return _write(out, evidence, export_chunks, public_key, server=server, with_pdf=with_pdf)
    except OSError as exc:
        reason = exc.strerror or exc.__class__.__name__
        message = f"--out: cannot write the pack into {out}: {reason}"
        raise InvalidInput(message, field="out") from None


def _write(
    out: Path,
    evidence: dict[str, Any],
    export_chunks: Iterable[bytes],
    public_key: dict[str, Any],
    *,
    server: str,
    with_pdf: bool,
) -> PackResult:
    staging = _staging(out)
    try:
        with (staging / EXPORT).open("wb") as handle:
            for chunk in export_chunks:
                handle.write(chunk)
        (staging / PUBLIC_KEY).write_text(public_key["pem"], encoding="ascii")
        key = AuditPublicKey.from_text(public_key["pem"])
        report = verify_file(staging / EXPORT, key, None)
        lines = report_lines(report)
        _write_sections(staging, evidence, report, lines, public_key["key_id"])
        files = [(f.name, f.about) for f in CSV_FILES] + list(OTHER_FILES)
        index = staging / "index.html"
        verify = {"ok": report["ok"], "command": VERIFY_COMMAND, "lines": lines}
        index.write_text(render_index(evidence, verify, files), encoding="utf-8")
        problem = _pdf(staging, index) if with_pdf else None
        _write_manifest(staging, evidence, server)
        names = sorted(path.name for path in staging.iterdir())
        move_into(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return PackResult(names, bool(report["ok"]), lines, problem)


def _write_sections(
    staging: Path,
    evidence: dict[str, Any],
    report: dict[str, Any],
    lines: list[str],
    key_id: str,
) -> None:
    for csv_file in CSV_FILES:
        text = csv_text(csv_file.columns, csv_file.rows(evidence))
        (staging / csv_file.name).write_text(text, encoding="utf-8")
    (staging / "evidence.json").write_text(_json_text(evidence), encoding="utf-8")
    reviews = {"period": evidence["period"], "access_reviews": evidence["access_reviews"]}
    (staging / "access-reviews.json").write_text(_json_text(reviews), encoding="utf-8")
    (staging / "retention-policy.md").write_text(evidence["retention"]["policy"], encoding="utf-8")
    verified = {"command": VERIFY_COMMAND, "checked_at": time.time(), **report}
    (staging / "audit-verify.json").write_text(_json_text(verified), encoding="utf-8")
    (staging / "VERIFY.md").write_text(
        verify_markdown(evidence, VERIFY_COMMAND, lines, key_id), encoding="utf-8"
    )


def _pdf(staging: Path, index: Path) -> str | None:
    browser = pdf_printer.find_browser()
    if browser is None:
        names = ", ".join(pdf_printer.BROWSERS)
        return f"no PDF: no Chromium found on PATH ({names}); index.html is the report"
    problem = pdf_printer.print_pdf(browser, index, staging / PDF)
    return f"no PDF: {problem}; index.html is the report" if problem else None


def _write_manifest(staging: Path, evidence: dict[str, Any], server: str) -> None:
    files = [
        {"path": path.name, "bytes": path.stat().st_size, "sha256": _sha256(path)}
        for path in sorted(staging.iterdir())
    ]
    manifest = {
        "format": "coffer-evidence-pack/v1",
        "coffer_version": __version__,
        "server": server,
        "organization": evidence["organization"],
        "period": evidence["period"],
        "generated_at": evidence["generated_at"],
        "files": files,
    }
    (staging / MANIFEST).write_text(_json_text(manifest), encoding="utf-8")


def move_into(staging: Path, out: Path) -> None:
    """Moves every file of ``staging`` into ``out``. A missing ``out`` becomes ``staging``
    with one rename (its missing parents are created). Into an existing folder the files
    are moved one by one, ``manifest.json`` last (a former manifest is set aside first, so
    no manifest ever describes a mix); files they replace are kept aside until all are in.
    On a failure part-way the former files are put back and the OSError raised; when even
    that fails, raises InvalidInput naming ``--out`` and the files left wrong."""
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        staging.rename(out)
        return
    names = sorted(path.name for path in staging.iterdir() if path.name != MANIFEST)
    if (staging / MANIFEST).exists():
        names.append(MANIFEST)
    aside = Path(tempfile.mkdtemp(prefix=".coffer-evidence-old-", dir=staging.parent))
    moved: list[str] = []
    try:
        if (out / MANIFEST).exists():
            (out / MANIFEST).replace(aside / MANIFEST)
        for name in names:
            if name != MANIFEST and (out / name).exists():
                (out / name).replace(aside / name)
            moved.append(name)
            (staging / name).replace(out / name)
    except OSError:
        _put_back(out, aside, moved)
        raise
    shutil.rmtree(aside, ignore_errors=True)


def _put_back(out: Path, aside: Path, moved: list[str]) -> None:
    """Undoes a part-way move: removes the new files in ``out`` and restores the former
    ones from ``aside``; raises InvalidInput naming the files it could not fix."""
    wrong: list[str] = []
    for name in moved:
        try:
            (out / name).unlink(missing_ok=True)
        except OSError:
            wrong.append(name)
    for path in sorted(aside.iterdir()):
        try:
            path.replace(out / path.name)
        except OSError:
            wrong.append(path.name)
    if wrong:
        raise InvalidInput(
            f"--out: moving the pack into {out} failed part-way and these files could not be "
            f"put back: {', '.join(sorted(set(wrong)))}; {out} holds a partial pack (the "
            f"former files that are missing are in {aside})",
            field="out",
        )
    aside.rmdir()

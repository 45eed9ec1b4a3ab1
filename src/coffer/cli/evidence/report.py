"""The human parts of an evidence pack: ``index.html`` (rendered by Jinja2 with autoescape,
so every name, reason or key shown is escaped; inline CSS and SVG, no script, a Content
Security Policy that forbids any), ``VERIFY.md`` and ``retention-policy.md``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from coffer.cli.csv_cells import plain
from coffer.cli.evidence.charts import STATE_COLOURS, bar_chart, top_series, week_columns
from coffer.cli.evidence.tables import SECRET_COLUMNS


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("coffer.cli.evidence", "templates"),
        autoescape=select_autoescape(["html", "j2"], default_for_string=True, default=True),
        undefined=StrictUndefined,
        trim_blocks=False,
    )
    env.filters["show"] = plain
    return env


def retention_blocks(markdown: str) -> list[tuple[str, str]]:
    """The retention policy's Markdown as (kind, text) blocks: ``h1``, ``h2`` or ``p``."""
    blocks: list[tuple[str, str]] = []
    for chunk in markdown.split("\n\n"):
        text = " ".join(line.strip() for line in chunk.splitlines()).strip()
        if text.startswith("## "):
            blocks.append(("h2", text[3:]))
        elif text.startswith("# "):
            blocks.append(("h1", text[2:]))
        elif text:
            blocks.append(("p", text))
    return blocks


def charts(evidence: dict[str, Any]) -> dict[str, Any]:
    """The report's SVG charts from the evidence's counts."""
    counts = evidence["charts"]
    return {
        "sensitivity": bar_chart("Secrets by sensitivity", counts["secrets_by_sensitivity"]),
        "states": bar_chart("Secrets by rotation state", counts["rotation_states"], STATE_COLOURS),
        "events": week_columns(
            "Audit events per week, by area",
            counts["weeks"],
            top_series(counts["audit_events_per_week"]),
        ),
        "reads": week_columns(
            "Secret reads per week", counts["weeks"], {"secret.read": counts["reads_per_week"]}
        ),
    }


def render_index(
    evidence: dict[str, Any], verify: dict[str, Any], files: Sequence[tuple[str, str]]
) -> str:
    """Returns ``index.html``: summary, control table, charts, every evidence section, and
    the verify command with its result (``verify``: ok, command, lines)."""
    template = _environment().get_template("report.html.j2")
    return template.render(
        **evidence,
        secret_columns=SECRET_COLUMNS,
        svg=charts(evidence),
        verify=verify,
        files=files,
        retention_blocks=retention_blocks(evidence["retention"]["policy"]),
    )


CHECK_HASHES = """    python3 - <<'EOF'
    import hashlib, json
    for f in json.load(open("manifest.json"))["files"]:
        digest = hashlib.sha256(open(f["path"], "rb").read()).hexdigest()
        print("OK     " if digest == f["sha256"] else "CHANGED", f["path"])
    EOF
"""


def verify_markdown(
    evidence: dict[str, Any], command: str, lines: Sequence[str], key_id: str
) -> str:
    """Returns ``VERIFY.md``: the exact command, its result when the pack was made, and
    what a passing check proves (and does not)."""
    period = evidence["period"]
    result = "\n".join(f"    {line}" for line in lines)
    return f"""# Verifying this evidence pack

## 1. The audit log export

`audit-export.jsonl` holds the audit log of organization {evidence["organization"]!s} from the
first entry written at or after {period["start"]} up to the latest checkpoint the server
signed when this pack was made (so it runs past the period's end, {period["end"]}: a log
can only be verified up to a signed checkpoint). Entries of other organizations on the same
server appear only as their leaf hashes; entries before the start are summarised by the
header's prefix (the roots of the earlier tree).

With coffer installed, and no server, run in this folder:

    {command}

Result when the pack was made:

{result}

It exits 0 when everything verifies and 9 when anything does not, naming the first entry
that was changed, removed, inserted or reordered, or the checkpoint that was edited, forged,
removed or replayed.

What a pass proves: every entry in the file hashes into the Merkle tree (RFC 9162) whose
roots the checkpoints sign, and every checkpoint is signed by the key in
`audit-public-key.pem` (key id `{key_id}`). What it does not prove by itself: that this is
the server's key. Obtain the key independently (run `coffer audit public-key` against the
server yourself, ask the operator, or compare with an earlier pack) and check that its key
id is `{key_id}`. Add `--witness FILE` with a checkpoint saved from an earlier verification
to prove the log never went back behind it.

## 2. The files

`manifest.json` lists every other file of the pack with its SHA-256. To check them:

{CHECK_HASHES}
or, with `jq`: `jq -r '.files[] | "\\(.sha256)  \\(.path)"' manifest.json | sha256sum -c -`

## 3. The control table

`controls.csv` (and the table in `index.html`) was computed by the server from its live
state when the pack was made; `evidence.json` holds every section as the server sent it.
The export contains a `compliance.evidence_exported` entry recording this pack's request.
"""

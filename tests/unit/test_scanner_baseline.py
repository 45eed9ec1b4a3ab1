"""The baseline file: accepted findings keyed by content fingerprint, written sorted and unique,
merged with what the file holds, and read back strictly."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from coffer.domain.errors import InvalidInput
from coffer.scanner.allowlist import Allowlist
from coffer.scanner.baseline import load_baseline, write_baseline
from coffer.scanner.engine import Engine
from coffer.scanner.findings import Finding
from coffer.scanner.project_config import ProjectConfig
from coffer.scanner.rules import builtin_rules
from coffer.scanner.samples import generate

RULES = builtin_rules()
ENGINE = Engine(RULES)
AWS = RULES.by_id("aws-access-key-id")


def _key(seed: str) -> str:
    return generate(AWS, random.Random(seed))


def _scan(text: str, path: str = "deploy/settings.py") -> list[Finding]:
    return ENGINE.scan(text.encode(), path)


def _entries(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line and not line.startswith("#")]


def test_written_baseline_has_a_header_and_one_sorted_line_per_secret(tmp_path: Path) -> None:
    """Each accepted secret is one '<fingerprint> <rule-id> <path>' line, sorted, after a header
    that explains the format and the union merge; the secret itself is not in the file."""
    keys = [_key(f"k{i}") for i in range(5)]
    findings = _scan("\n".join(f"KEY_{i} = '{key}'" for i, key in enumerate(keys)))
    assert len(findings) == 5
    baseline = tmp_path / ".coffer-baseline"
    assert write_baseline(baseline, findings) == 5
    text = baseline.read_text()
    assert text.startswith("# ")
    assert ".coffer-baseline merge=union" in text
    assert "<fingerprint> <rule-id> <path>" in text
    lines = _entries(baseline)
    assert lines == sorted(lines)
    assert {line.split(" ")[0] for line in lines} == {f.fingerprint for f in findings}
    assert all(line.endswith(" aws-access-key-id deploy/settings.py") for line in lines)
    for key in keys:
        assert key not in text
    assert load_baseline(baseline) == {f.fingerprint for f in findings}


def test_writing_merges_with_the_file_and_keeps_it_unique(tmp_path: Path) -> None:
    """A second write adds only new fingerprints, keeps existing entries unchanged (even when the
    secret has moved), and writing the same findings again changes nothing."""
    baseline = tmp_path / ".coffer-baseline"
    first = _scan(f"A = '{_key('a')}'\nB = '{_key('b')}'\n", path="old/place.py")
    assert write_baseline(baseline, first) == 2
    before = baseline.read_text()
    moved = _scan(f"B = '{_key('b')}'\n", path="new/place.py")
    assert write_baseline(baseline, moved) == 2
    assert baseline.read_text() == before
    added = _scan(f"C = '{_key('c')}'\n", path="other.py")
    assert write_baseline(baseline, added + first) == 3
    lines = _entries(baseline)
    assert len(lines) == 3
    assert lines == sorted(lines)
    assert sum(line.endswith("old/place.py") for line in lines) == 2


def test_a_moved_secret_stays_accepted_and_a_new_one_on_the_same_line_is_reported(
    tmp_path: Path,
) -> None:
    """The baseline keys on the secret's content: the accepted secret moved to another file and
    line is still accepted; a different secret on the accepted line is reported."""
    baseline = tmp_path / ".coffer-baseline"
    old, new = _key("old"), _key("new")
    write_baseline(baseline, _scan(f"x = 1\nAWS_KEY = '{old}'\n", path="app/config.py"))
    allowlist = Allowlist.from_config(ProjectConfig(), load_baseline(baseline))
    moved = _scan(f"# moved\n\n\n\nDEPLOY_KEY = '{old}'\n", path="deploy/keys.py")
    assert [f.line for f in moved] == [5]
    assert all(allowlist.allows(f) for f in moved)
    replaced = _scan(f"x = 1\nAWS_KEY = '{new}'\n", path="app/config.py")
    assert [f.line for f in replaced] == [2]
    assert not any(allowlist.allows(f) for f in replaced)


def test_a_union_merge_result_loads_and_is_tidied_on_the_next_write(tmp_path: Path) -> None:
    """Two branches' baselines concatenated by merge=union (duplicates, out of order, a second
    header) load fine, and the next write leaves one sorted line per fingerprint."""
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    shared = _scan(f"S = '{_key('shared')}'\n")
    write_baseline(ours, shared + _scan(f"O = '{_key('ours')}'\n"))
    write_baseline(theirs, shared + _scan(f"T = '{_key('theirs')}'\n"))
    merged = tmp_path / ".coffer-baseline"
    merged.write_text(ours.read_text() + theirs.read_text())
    assert len(load_baseline(merged)) == 3
    assert write_baseline(merged, []) == 3
    lines = _entries(merged)
    assert len(lines) == 3
    assert lines == sorted(lines)
    assert merged.read_text().count("merge=union") == 1


def test_a_missing_baseline_is_empty_and_is_created_on_write(tmp_path: Path) -> None:
    """No file means nothing is accepted; writing creates it, folders included, readable by
    others as a committed file should be."""
    baseline = tmp_path / "ci" / ".coffer-baseline"
    assert load_baseline(baseline) == frozenset()
    assert write_baseline(baseline, []) == 0
    assert baseline.is_file()
    assert baseline.stat().st_mode & 0o644 == 0o644
    assert _entries(baseline) == []
    assert [p.name for p in baseline.parent.iterdir()] == [".coffer-baseline"]


def test_paths_that_would_break_the_line_format_are_escaped(tmp_path: Path) -> None:
    """A path with a newline, a tab, a line separator or spaces is written on one line and
    reads back."""
    baseline = tmp_path / ".coffer-baseline"
    findings = _scan(f"K = '{_key('odd')}'\n", path="odd\nname\twith space\u2028.py")
    write_baseline(baseline, findings)
    [line] = _entries(baseline)
    assert line.endswith("odd\\nname\\twith space\\u2028.py")
    assert load_baseline(baseline) == {findings[0].fingerprint}


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("0123456789abcdef01234567", "no rule or path"),
        ("0123456789abcdef01234567 aws-access-key-id", "no path"),
        ("0123456789ABCDEF01234567 aws-access-key-id a.py", "uppercase hex"),
        ("0123456789abcdef0123 aws-access-key-id a.py", "short fingerprint"),
        ("0123456789abcdef01234567 AWS_KEY a.py", "bad rule id"),
        ("AKIAIOSFODNN7EXAMPLE", "a secret pasted in"),
    ],
)
def test_a_malformed_line_is_an_error_naming_its_number(
    tmp_path: Path, line: str, why: str
) -> None:
    """A line that is not '<fingerprint> <rule-id> <path>' is refused with its line number,
    and writing to such a file leaves it unchanged."""
    baseline = tmp_path / ".coffer-baseline"
    text = f"# header\n\n0123456789abcdef01234567 aws-access-key-id ok.py\n{line}\n"
    baseline.write_text(text)
    with pytest.raises(InvalidInput) as caught:
        load_baseline(baseline)
    assert caught.value.field == "baseline:4", why
    assert "line 4" in caught.value.message
    with pytest.raises(InvalidInput):
        write_baseline(baseline, _scan(f"K = '{_key('x')}'\n"))
    assert baseline.read_text() == text


def test_an_unreadable_baseline_is_an_error(tmp_path: Path) -> None:
    """A baseline that is a folder or not UTF-8 is refused naming the baseline."""
    folder = tmp_path / "folder"
    folder.mkdir()
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe\x00")
    for path in (folder, binary):
        with pytest.raises(InvalidInput) as caught:
            load_baseline(path)
        assert caught.value.field == "baseline"

"""How a finished evidence pack reaches ``--out``: a new folder is the staging folder renamed
at once; into an existing folder the manifest comes last, and a failure part-way puts the
former files back or says which files it could not."""

from __future__ import annotations

from pathlib import Path

import pytest

from coffer.cli.evidence.pack import MANIFEST, move_into
from coffer.domain.errors import InvalidInput

NEW = {"index.html": "new report", "evidence.json": "{}", MANIFEST: "new manifest"}
OLD = {"index.html": "old report", MANIFEST: "old manifest", "notes.txt": "mine"}


def _folder(path: Path, files: dict[str, str]) -> Path:
    """Creates ``path`` holding ``files`` (name to text)."""
    path.mkdir(parents=True)
    for name, text in files.items():
        (path / name).write_text(text)
    return path


def _contents(path: Path) -> dict[str, str]:
    """The files of ``path`` (name to text)."""
    return {p.name: p.read_text() for p in sorted(path.iterdir())}


def _failing_replace(
    monkeypatch: pytest.MonkeyPatch, *, fail_on: str, also: str | None = None
) -> list[str]:
    """Makes moving a file named ``fail_on`` out of the staging folder raise (and, with
    ``also``, putting back a former file of that name); returns the names moved."""
    real = Path.replace
    into: list[str] = []

    def replace(self: Path, target: str | Path) -> Path:
        target = Path(target)
        if self.parent.name == ".coffer-evidence-x" and self.name == fail_on:
            raise OSError(28, "No space left on device")
        if self.parent.name.startswith(".coffer-evidence-old-") and self.name == also:
            raise OSError(13, "Permission denied")
        into.append(target.name)
        return real(self, target)

    monkeypatch.setattr(Path, "replace", replace)
    return into


def test_a_new_folder_is_the_staging_folder_renamed_in_one_step(tmp_path: Path) -> None:
    """A missing ``--out`` (parents too) becomes the staging folder itself: same inode,
    every file in it, no staging folder left."""
    staging = _folder(tmp_path / ".coffer-evidence-x", NEW)
    inode = staging.stat().st_ino
    out = tmp_path / "audits" / "2026-q3"
    move_into(staging, out)
    assert out.stat().st_ino == inode
    assert _contents(out) == NEW
    assert not staging.exists()


def test_into_an_existing_folder_the_manifest_comes_last(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With --force the old manifest is set aside first and the new one moved in last;
    other files of the folder stay."""
    staging = _folder(tmp_path / ".coffer-evidence-x", NEW)
    out = _folder(tmp_path / "pack", OLD)
    moves = _failing_replace(monkeypatch, fail_on="nothing")
    move_into(staging, out)
    assert moves[0] == MANIFEST
    assert moves[-1] == MANIFEST
    assert _contents(out) == {**NEW, "notes.txt": "mine"}
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".coffer")] == [staging.name]


def test_a_failure_part_way_puts_the_former_files_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A disk that fills while files move leaves the folder exactly as it was (no half
    pack, the old manifest and report back) and raises the error."""
    staging = _folder(tmp_path / ".coffer-evidence-x", NEW)
    out = _folder(tmp_path / "pack", OLD)
    _failing_replace(monkeypatch, fail_on="index.html")
    with pytest.raises(OSError, match="No space left"):
        move_into(staging, out)
    assert _contents(out) == OLD


def test_a_failure_that_cannot_be_undone_names_the_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When even putting back fails, the error names ``--out``, the partial pack and the
    files left wrong, instead of leaving a half pack silently."""
    staging = _folder(tmp_path / ".coffer-evidence-x", NEW)
    out = _folder(tmp_path / "pack", OLD)
    _failing_replace(monkeypatch, fail_on="index.html", also=MANIFEST)
    with pytest.raises(InvalidInput) as caught:
        move_into(staging, out)
    assert caught.value.field == "out"
    assert "could not be put back: manifest.json" in str(caught.value)
    assert "partial pack" in str(caught.value)

"""Git sources on real temporary repositories: the whole history (a deleted secret is still
found, with its commit; each blob is scanned once) and staged changes (only added lines)."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from pathlib import Path

import pytest

from coffer.domain.errors import InvalidInput
from coffer.scanner.engine import Engine
from coffer.scanner.git_sources import (
    BlobReader,
    history_listing,
    repository_root,
    staged_listing,
)
from coffer.scanner.rules import builtin_rules
from coffer.scanner.runner import ScanResult, run_scan
from coffer.scanner.samples import generate
from coffer.scanner.sources import Listing, path_listing

RULES = builtin_rules()
ENGINE = Engine(RULES)
AUTHOR = "Dev Eloper <dev@example.com>"


def aws_key(seed: int) -> str:
    """A generated fake AWS access key id."""
    return generate(RULES.by_id("aws-access-key-id"), random.Random(seed))


class Repo:
    """A git repository in a temporary folder, with a fixed author and no user settings."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("GIT_")},
            "HOME": str(root.parent),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_AUTHOR_NAME": "Dev Eloper",
            "GIT_AUTHOR_EMAIL": "dev@example.com",
            "GIT_COMMITTER_NAME": "Dev Eloper",
            "GIT_COMMITTER_EMAIL": "dev@example.com",
        }
        root.mkdir()
        self.git("init", "-q", "-b", "main")

    def git(self, *args: str) -> str:
        """Runs git in the repository and returns its output."""
        done = subprocess.run(
            ["git", *args], cwd=self.root, env=self.env, capture_output=True, text=True, check=True
        )
        return done.stdout.strip()

    def write(self, relative: str, text: str) -> None:
        """Writes a file of the work tree."""
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    def commit(self, message: str, *paths: str) -> str:
        """Stages ``paths`` (all changes when none), commits, and returns the commit id."""
        self.git("add", *(paths or ("-A",)))
        self.git("commit", "-q", "-m", message)
        return self.git("rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Repo:
    """An empty repository; git run by the scanner sees the same clean settings."""
    made = Repo(tmp_path / "repo")
    for name in list(os.environ):
        if name.startswith("GIT_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    return made


def scan(listing: Listing, workers: int = 1) -> ScanResult:
    """Scans a listing with the built-in rules."""
    return run_scan(listing, ENGINE, workers=workers)


def test_history_finds_a_secret_deleted_later_with_its_commit(repo: Repo) -> None:
    """A key committed and then removed is found in history, named by the commit that added it,
    its author and date, while a scan of the work tree finds nothing."""
    repo.write("README.md", "hello\n")
    repo.commit("start")
    key = aws_key(1)
    repo.write("config/settings.py", f"DEBUG = True\nAWS_KEY = '{key}'\n")
    added = repo.commit("add settings")
    repo.write("config/settings.py", "DEBUG = True\nAWS_KEY = os.environ['AWS_KEY']\n")
    repo.commit("read the key from the environment")
    result = scan(history_listing(repo.root))
    assert [(f.path, f.line, f.secret, f.commit, f.author) for f in result.findings] == [
        ("config/settings.py", 2, key, added, AUTHOR)
    ]
    assert result.findings[0].date == repo.git("show", "-s", "--format=%aI", added)
    assert scan(path_listing(repo.root)).findings == []


def test_each_blob_is_scanned_once_across_branches_and_paths(repo: Repo) -> None:
    """The same file content on two branches and at two paths is one blob, scanned once and
    reported once (for the commit that first brought it in); other content holding the same
    key is another blob and another finding."""
    key = aws_key(2)
    content = f"aws_access_key_id = {key}\n"
    repo.write("a/creds.ini", content)
    first = repo.commit("creds")
    repo.git("checkout", "-q", "-b", "feature")
    repo.write("b/copy.ini", content)
    repo.commit("copy on a branch")
    repo.git("checkout", "-q", "main")
    repo.write("c/other.ini", f"# another file\nkey={key}\n")
    other = repo.commit("other content, same key")
    listing = history_listing(repo.root)
    blobs = [item.blob for item in listing.items]
    assert len(blobs) == len(set(blobs))
    result = scan(listing)
    assert [(f.path, f.line, f.commit) for f in result.findings] == [
        ("a/creds.ini", 1, first),
        ("c/other.ini", 2, other),
    ]
    assert result.files_scanned == len(blobs) == 2


def test_a_secret_brought_in_by_a_merge_resolution_is_named_by_the_merge(repo: Repo) -> None:
    """Content that exists only in a merge commit (a conflict resolution) is scanned and named
    by that merge."""
    repo.write("app.cfg", "value = 1\n")
    repo.commit("start")
    repo.git("checkout", "-q", "-b", "other")
    repo.write("app.cfg", "value = 2\n")
    repo.commit("two")
    repo.git("checkout", "-q", "main")
    repo.write("app.cfg", "value = 3\n")
    repo.commit("three")
    subprocess.run(
        ["git", "merge", "-q", "other"], cwd=repo.root, env=repo.env, capture_output=True
    )
    key = aws_key(3)
    repo.write("app.cfg", f"value = 4\nkey = {key}\n")
    merge = repo.commit("merge other")
    assert len(repo.git("show", "-s", "--format=%P", merge).split()) == 2
    result = scan(history_listing(repo.root))
    assert [(f.path, f.secret, f.commit) for f in result.findings] == [("app.cfg", key, merge)]


def test_history_scan_in_workers_matches_one_process(repo: Repo) -> None:
    """Over 2 MB of history scanned by worker processes (each with its own cat-file) gives the
    findings of a scan in one process."""
    padding = "".join(f"filler line {n:06d}\n" for n in range(4000))
    for index in range(30):
        repo.write(f"m{index}.txt", f"{padding}{index}\nsecret = '{aws_key(10 + index)}'\n")
    repo.commit("many files")
    listing = history_listing(repo.root)
    alone, pooled = scan(listing, workers=1), scan(listing, workers=2)
    assert len(alone.findings) == 30
    assert [(f.path, f.secret, f.commit) for f in pooled.findings] == [
        (f.path, f.secret, f.commit) for f in alone.findings
    ]


def test_staged_scan_reports_only_added_lines(repo: Repo) -> None:
    """A staged change reports the key on its added line, not an old key elsewhere in the same
    file, and not unstaged edits of the work tree."""
    old, new, unstaged = aws_key(4), aws_key(5), aws_key(6)
    repo.write("deploy.sh", f"export OLD={old}\necho hi\n")
    repo.commit("old key")
    repo.write("deploy.sh", f"export OLD={old}\necho hi\nexport NEW={new}\n")
    repo.git("add", "deploy.sh")
    repo.write("deploy.sh", f"export OLD={old}\necho hi\nexport NEW={new}\nX={unstaged}\n")
    result = scan(staged_listing(repo.root))
    assert [(f.path, f.line, f.secret, f.commit) for f in result.findings] == [
        ("deploy.sh", 3, new, None)
    ]
    assert [f.secret for f in scan(history_listing(repo.root)).findings] == [old]


def test_staged_scan_before_the_first_commit_and_with_odd_names(repo: Repo) -> None:
    """Staged files in a repository without commits are scanned, including names with spaces,
    quotes and non-ASCII letters, and from a subfolder paths stay repository-relative."""
    key, second = aws_key(7), aws_key(8)
    repo.write('dir with space/naïve "q".env', f"A=1\nKEY={key}\n")
    repo.write("sub/plain.txt", f"{second}\n")
    repo.git("add", "-A")
    result = scan(staged_listing(repo.root / "sub"))
    assert [(f.path, f.line) for f in result.findings] == [
        ('dir with space/naïve "q".env', 2),
        ("sub/plain.txt", 1),
    ]


def test_staged_deletions_and_clean_changes_report_nothing(repo: Repo) -> None:
    """Removing a secret, or staging a change without one, gives an empty staged scan."""
    repo.write("a.txt", f"{aws_key(9)}\n")
    repo.commit("key")
    repo.git("rm", "-q", "a.txt")
    repo.write("b.txt", "nothing here\n")
    repo.git("add", "b.txt")
    result = scan(staged_listing(repo.root))
    assert result.findings == []
    assert result.files_scanned == 1


def test_not_a_repository_is_a_clear_error(tmp_path: Path) -> None:
    """History and staged scans outside a repository raise InvalidInput naming the path."""
    for make in (history_listing, staged_listing, repository_root):
        with pytest.raises(InvalidInput) as error:
            make(tmp_path)
        assert error.value.field == "path"
        assert "not a git repository" in error.value.message


def test_blob_reader_reads_blobs_and_reports_missing_ones(repo: Repo) -> None:
    """The cat-file reader returns a blob's bytes, and None for an object the repository lacks."""
    repo.write("f.txt", "content\n")
    repo.commit("f")
    oid = repo.git("rev-parse", "HEAD:f.txt")
    with BlobReader(str(repo.root)) as reader:
        assert reader.read(oid) == b"content\n"
        assert reader.read("1" * 40) is None
        assert reader.read(oid) == b"content\n"


def test_an_added_line_starting_with_plus_plus_is_content_not_a_file_name(repo: Repo) -> None:
    """An added line `++ x` (shown as `+++ x` in the patch) does not hide a key that a later
    hunk of the same file adds."""
    key = aws_key(20)
    body = [f"line {n}" for n in range(1, 11)]
    repo.write("notes.txt", "\n".join(body) + "\n")
    repo.commit("notes")
    body.insert(1, "++ not a header")
    body.append(f"key = {key}")
    repo.write("notes.txt", "\n".join(body) + "\n")
    repo.git("add", "notes.txt")
    result = scan(staged_listing(repo.root))
    assert [(f.path, f.line, f.secret) for f in result.findings] == [("notes.txt", 12, key)]


def test_a_staged_rename_adds_only_the_lines_that_changed(repo: Repo) -> None:
    """`git mv` of a file holding an old key adds no lines; a rename with an edit reports only
    the new key, under the new path."""
    old, new = aws_key(21), aws_key(22)
    repo.write("old.cfg", f"a = 1\nkey = {old}\nb = 2\n")
    repo.write("keep.cfg", f"c = 3\nkey = {old}\nd = 4\n")
    repo.commit("configs")
    repo.git("mv", "old.cfg", "new.cfg")
    pure = scan(staged_listing(repo.root))
    assert pure.findings == []
    assert pure.files_scanned == 0
    repo.git("mv", "keep.cfg", "moved.cfg")
    repo.write("moved.cfg", f"c = 3\nkey = {old}\nd = 4\nnew = {new}\n")
    repo.git("add", "moved.cfg")
    result = scan(staged_listing(repo.root))
    assert [(f.path, f.line, f.secret) for f in result.findings] == [("moved.cfg", 4, new)]


def test_history_names_signed_commits_rightly_with_show_signature_on(repo: Repo) -> None:
    """With `log.showSignature` set, a key added by an SSH-signed commit is still named by that
    commit (git's signature words do not reach the parser)."""
    ssh_keygen = shutil.which("ssh-keygen")
    if ssh_keygen is None:
        pytest.skip("ssh-keygen is not installed: cannot make a signed commit")
    signing = repo.root.parent / "signing"
    subprocess.run([ssh_keygen, "-q", "-t", "ed25519", "-N", "", "-f", str(signing)], check=True)
    repo.git("config", "gpg.format", "ssh")
    repo.git("config", "user.signingkey", f"{signing}.pub")
    repo.write("README.md", "hello\n")
    repo.commit("start")
    key = aws_key(23)
    repo.write("signed.env", f"KEY={key}\n")
    repo.git("add", "signed.env")
    repo.git("commit", "-q", "-S", "-m", "signed")
    signed = repo.git("rev-parse", "HEAD")
    repo.git("config", "log.showSignature", "true")
    result = scan(history_listing(repo.root))
    assert [(f.path, f.secret, f.commit) for f in result.findings] == [("signed.env", key, signed)]


def test_history_leaves_out_symbolic_links(repo: Repo) -> None:
    """A symbolic link whose target text looks like a key is not file content: it is neither
    listed nor reported."""
    (repo.root / "link").symlink_to(f"AWS_KEY={aws_key(24)}")
    repo.write("plain.txt", "nothing\n")
    repo.commit("a link")
    listing = history_listing(repo.root)
    assert [item.path for item in listing.items] == ["plain.txt"]
    assert scan(listing).findings == []


def test_history_reports_a_secret_once_per_path_at_its_first_commit(repo: Repo) -> None:
    """A key that stays in a file while other lines change is reported once, at the commit that
    brought it in, though every later version of the file holds it."""
    key = aws_key(25)
    repo.write("app.cfg", f"version = 1\nkey = {key}\n")
    first = repo.commit("key")
    for version in (2, 3):
        repo.write("app.cfg", f"version = {version}\nkey = {key}\n")
        repo.commit(f"version {version}")
    repo.write("copy.cfg", f"key = {key}\n")
    copied = repo.commit("same key elsewhere")
    result = scan(history_listing(repo.root))
    assert [(f.path, f.line, f.commit) for f in result.findings] == [
        ("app.cfg", 2, first),
        ("copy.cfg", 1, copied),
    ]

"""Hooks that stop a commit adding a secret: the pre-commit framework running the hook this
repository's ``.pre-commit-hooks.yaml`` declares, and the plain git hook that ``coffer guard
install`` writes, each on a real temporary repository; and the GitHub Actions example that
scans in CI."""

from __future__ import annotations

import random
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from coffer.scanner.rules import builtin_rules
from coffer.scanner.samples import generate
from tests.e2e.harness import VENV_BIN, base_env

MANIFEST = Path(__file__).resolve().parents[2] / ".pre-commit-hooks.yaml"
WORKFLOW = Path(__file__).resolve().parents[2] / "examples" / "github-actions" / "coffer-scan.yml"
AWS = builtin_rules().by_id("aws-access-key-id")


def aws_key(seed: int) -> str:
    """A generated fake AWS access key id."""
    return generate(AWS, random.Random(seed))


class Repo:
    """A temporary git repository and the commands a user runs in it."""

    def __init__(self, root: Path, home: Path, cache: Path) -> None:
        self.root = root
        self.env = base_env(
            home,
            {
                "XDG_CACHE_HOME": str(cache),
                "GIT_AUTHOR_NAME": "Dev",
                "GIT_AUTHOR_EMAIL": "dev@example.com",
                "GIT_COMMITTER_NAME": "Dev",
                "GIT_COMMITTER_EMAIL": "dev@example.com",
                "GIT_CONFIG_NOSYSTEM": "1",
                "PRE_COMMIT_HOME": str(home / "pre-commit-cache"),
            },
        )
        root.mkdir()
        self.run("git", "init", "-q", "-b", "main")

    def run(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        """Runs a command in the repository (or ``cwd``) and returns its result."""
        return subprocess.run(
            args,
            cwd=cwd or self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def coffer(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        """Runs ``python -m coffer ARGS`` in the repository."""
        return self.run(sys.executable, "-m", "coffer", *args, cwd=cwd)

    def commit_file(
        self, name: str, text: str, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Writes and stages a file, then runs ``git commit`` (hooks included)."""
        folder = cwd or self.root
        (folder / name).write_text(text)
        self.run("git", "add", name, cwd=folder)
        return self.run("git", "commit", "-m", f"add {name}", cwd=folder)

    def head(self, cwd: Path | None = None) -> str:
        """The current commit id, or "" before the first commit."""
        return self.run("git", "rev-parse", "-q", "--verify", "HEAD", cwd=cwd).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path, cache_home: Path) -> Repo:
    """An empty repository with a home of its own."""
    home = tmp_path / "home"
    home.mkdir()
    return Repo(tmp_path / "repo", home, cache_home)


def assert_blocked(repo: Repo, result: subprocess.CompletedProcess[str], before: str) -> None:
    """The commit failed, no commit was made, the key is named masked and never in plaintext."""
    assert result.returncode != 0, result.stdout + result.stderr
    assert repo.head() == before
    output = result.stdout + result.stderr
    assert "aws-access-key-id" in output
    assert aws_key(1) not in output


def test_the_manifest_is_valid_for_pre_commit() -> None:
    """`pre-commit validate-manifest` accepts .pre-commit-hooks.yaml."""
    result = subprocess.run(
        [str(Path(VENV_BIN) / "pre-commit"), "validate-manifest", str(MANIFEST)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_github_workflow_installs_coffer_from_its_repository_at_a_tag() -> None:
    """The example workflow never installs `coffer` from PyPI (that name is another project's):
    every pip install names coffer's git repository and a tag."""
    workflow = yaml.safe_load(WORKFLOW.read_text())
    runs = [step.get("run", "") for step in workflow["jobs"]["scan"]["steps"]]
    installs = [shlex.split(line) for run in runs for line in run.splitlines() if "pip " in line]
    assert installs
    for words in installs:
        requirements = words[words.index("install") + 1 :]
        assert requirements, words
        for requirement in requirements:
            name, _, url = requirement.partition(" @ ")
            assert name == "coffer", requirement
            assert url.startswith("git+https://"), requirement
            assert "@" in url.rsplit("/", 1)[-1], f"{requirement}: no tag"
    assert any("coffer scan --git --format sarif" in run for run in runs)


def _local_hook_config() -> str:
    """A .pre-commit-config.yaml running our manifest's hook as a local hook: id, entry
    arguments and pass_filenames as published, with this interpreter in place of `coffer`."""
    [hook] = yaml.safe_load(MANIFEST.read_text())
    program, *arguments = shlex.split(hook["entry"])
    assert program == "coffer"
    entry = shlex.join([sys.executable, "-m", "coffer", *arguments])
    local = {
        "id": hook["id"],
        "name": hook["name"],
        "entry": entry,
        "language": "system",
        "pass_filenames": hook["pass_filenames"],
        "stages": hook["stages"],
    }
    return yaml.safe_dump({"repos": [{"repo": "local", "hooks": [local]}]})


def test_pre_commit_blocks_a_commit_that_adds_an_aws_key(repo: Repo) -> None:
    """With the hook installed by `pre-commit install`, a commit adding an AWS key fails and
    is not made; a clean commit passes."""
    (repo.root / ".pre-commit-config.yaml").write_text(_local_hook_config())
    installed = repo.run(str(Path(VENV_BIN) / "pre-commit"), "install")
    assert installed.returncode == 0, installed.stdout + installed.stderr
    clean = repo.commit_file(
        ".pre-commit-config.yaml", (repo.root / ".pre-commit-config.yaml").read_text()
    )
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "coffer secret scan" in clean.stderr and "Passed" in clean.stderr
    before = repo.head()
    blocked = repo.commit_file("settings.py", f"AWS_ACCESS_KEY_ID = '{aws_key(1)}'\n")
    assert_blocked(repo, blocked, before)
    assert "Failed" in blocked.stdout + blocked.stderr
    repo.run("git", "rm", "-q", "--cached", "settings.py")
    fine = repo.commit_file("notes.md", "nothing secret\n")
    assert fine.returncode == 0, fine.stdout + fine.stderr


def test_guard_install_blocks_the_same_commit(repo: Repo) -> None:
    """`coffer guard install` writes an executable hook that stops a commit adding an AWS key
    and lets a clean one through; installing again changes nothing; uninstall removes it."""
    installed = repo.coffer("guard", "install")
    assert installed.returncode == 0, installed.stderr
    hook = repo.root / ".git" / "hooks" / "pre-commit"
    assert hook.stat().st_mode & 0o111
    assert repo.commit_file("README.md", "hello\n").returncode == 0
    before = repo.head()
    blocked = repo.commit_file("settings.py", f"AWS_ACCESS_KEY_ID = '{aws_key(1)}'\n")
    assert_blocked(repo, blocked, before)
    again = repo.coffer("guard", "install")
    assert again.returncode == 0
    assert "already installed" in again.stdout
    removed = repo.coffer("guard", "uninstall")
    assert removed.returncode == 0
    assert not hook.exists()
    assert repo.run("git", "commit", "-q", "-m", "now unguarded").returncode == 0


def test_guard_leaves_a_foreign_hook_alone_unless_forced(repo: Repo) -> None:
    """An existing hook coffer did not write is refused (exit 2, naming --force) and left
    as it was; --force replaces it and keeps it as pre-commit.bak; uninstall will not remove
    a foreign hook."""
    hook = repo.root / ".git" / "hooks" / "pre-commit"
    hook.parent.mkdir(parents=True, exist_ok=True)
    hook.write_text("#!/bin/sh\necho mine\n")
    refused = repo.coffer("guard", "install")
    assert refused.returncode == 2
    assert refused.stderr.startswith("error [force]: "), refused.stderr
    assert hook.read_text() == "#!/bin/sh\necho mine\n"
    assert repo.coffer("guard", "uninstall").returncode == 2
    assert hook.read_text() == "#!/bin/sh\necho mine\n"
    forced = repo.coffer("guard", "install", "--force")
    assert forced.returncode == 0, forced.stderr
    assert (hook.parent / "pre-commit.bak").read_text() == "#!/bin/sh\necho mine\n"
    assert "coffer scan --staged" in hook.read_text()


def test_guard_follows_core_hooks_path(repo: Repo) -> None:
    """With core.hooksPath set, the hook goes to that folder, where git runs it."""
    repo.run("git", "config", "core.hooksPath", ".githooks")
    assert repo.coffer("guard", "install").returncode == 0
    assert (repo.root / ".githooks" / "pre-commit").is_file()
    assert not (repo.root / ".git" / "hooks" / "pre-commit").exists()
    assert repo.commit_file("a.txt", "a\n").returncode == 0
    before = repo.head()
    assert_blocked(repo, repo.commit_file("k.env", f"KEY={aws_key(1)}\n"), before)


def test_guard_installed_from_a_linked_worktree_guards_it(repo: Repo) -> None:
    """Installed from a linked worktree, the hook lands in the shared hooks folder and stops a
    commit made in that worktree."""
    assert repo.commit_file("a.txt", "a\n").returncode == 0
    tree = repo.root.parent / "tree"
    assert repo.run("git", "worktree", "add", "-q", "-b", "side", str(tree)).returncode == 0
    assert repo.coffer("guard", "install", cwd=tree).returncode == 0
    assert (repo.root / ".git" / "hooks" / "pre-commit").is_file()
    before = repo.head(cwd=tree)
    blocked = repo.commit_file("k.env", f"KEY={aws_key(1)}\n", cwd=tree)
    assert blocked.returncode != 0
    assert repo.head(cwd=tree) == before
    assert aws_key(1) not in blocked.stdout + blocked.stderr


def test_guard_outside_a_repository_exits_2(tmp_path: Path) -> None:
    """`coffer guard install` outside a git repository exits 2 naming --repo."""
    home = tmp_path / "home"
    home.mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "coffer", "guard", "install"],
        cwd=tmp_path,
        env={**base_env(home), "GIT_CONFIG_NOSYSTEM": "1"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error [repo]: "), result.stderr

"""What a project accepts: path, rule and value allow-lists and the baseline's fingerprints.

``Allowlist.skips_path`` lets a source leave an allowed file unread; ``Allowlist.allows`` drops a
finding after the scan. Path patterns are gitignore-style (``pathspec.GitIgnoreSpec``) and are
matched against the repository-relative POSIX path a finding carries.
"""

from __future__ import annotations

import re

import pathspec

from coffer.scanner.findings import Finding
from coffer.scanner.project_config import ProjectConfig


class Allowlist:
    """Decides which files need no reading and which findings are not reported."""

    def __init__(
        self,
        *,
        paths: tuple[str, ...] = (),
        rules: tuple[str, ...] = (),
        values: tuple[str, ...] = (),
        baseline: frozenset[str] = frozenset(),
    ) -> None:
        self._paths = pathspec.GitIgnoreSpec.from_lines(paths) if paths else None
        self._rules = frozenset(rules)
        self._values = tuple(re.compile(expression) for expression in values)
        self._baseline = baseline

    @classmethod
    def from_config(
        cls, config: ProjectConfig, baseline: frozenset[str] = frozenset()
    ) -> Allowlist:
        """Returns the allow-lists of ``config`` together with the ``baseline`` fingerprints."""
        return cls(
            paths=config.allow_paths,
            rules=config.allow_rules,
            values=config.allow_values,
            baseline=baseline,
        )

    def skips_path(self, path: str) -> bool:
        """Returns True when the repository-relative POSIX ``path`` matches a path pattern, so
        the file need not be read at all."""
        if self._paths is None:
            return False
        return self._paths.match_file(path.removeprefix("./"))

    def allows(self, finding: Finding) -> bool:
        """Returns True when ``finding`` is accepted: its rule or path is allowed, an allowed
        value pattern finds its secret, or its fingerprint is in the baseline."""
        return (
            finding.rule_id in self._rules
            or finding.fingerprint in self._baseline
            or any(pattern.search(finding.secret) for pattern in self._values)
            or self.skips_path(finding.path)
        )

    def __repr__(self) -> str:
        return (
            f"Allowlist(rules={sorted(self._rules)!r}, values={len(self._values)}, "
            f"baseline={len(self._baseline)})"
        )

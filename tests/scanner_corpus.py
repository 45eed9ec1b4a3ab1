"""A labelled corpus for the secret scanner, generated from a seed.

``generate_corpus(root, size_bytes=..., seed=...)`` writes files of many kinds (Python, JS/TS,
Go, Java, YAML, JSON, .env, Terraform, Dockerfiles, shell, INI/properties, XML, Markdown,
notebooks, CSV, minified JS, PEM files, lockfiles) under ``root`` and returns a ``Manifest``:

- ``planted``: every fake credential written, one per rule in turn (so a new rule file is picked
  up with no change here) plus generic ``key = value`` secrets: file, line, rule id, kind and
  the secret. A provider token is written the ways people write it (assignments in each
  syntax, headers, URLs, command lines); an embedding the rule's own regex does not accept is
  not used (``raw_only`` lists the rules that fell back to their bare sample line). Generic
  secrets are written in every syntax without that check: they test the generic rule itself.
- ``decoys``: text that must not be reported (documentation examples, placeholders,
  environment lookups, code references, UUIDs, git SHAs, content and lockfile hashes, test
  fixtures, tokens whose checksum fails, public keys, certificates, data URIs, request ids,
  CSS hashes, minified JS): file, first and last line, kind.

Every other line is filler that holds no credential, so any finding off the planted lines is
a false positive. The same seed and size give the same corpus, byte for byte.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

from coffer.scanner.rules import Rule, RuleSet, builtin_rules
from coffer.scanner.samples import generate, sample_secret
from tests.scanner_corpus_code import CODE_SYNTAXES, minified_line
from tests.scanner_corpus_decoys import MAKERS, lockfile
from tests.scanner_corpus_syntax import CONFIG_SYNTAXES, Syntax
from tests.scanner_corpus_values import GENERIC_NAMES, generic_secret

MB = 1_000_000
SYNTAXES = CODE_SYNTAXES + CONFIG_SYNTAXES
_EMBED_TRIES = 8
_ASSIGN_DECOYS = frozenset({"doc-example", "placeholder", "uuid", "test-fixture", "bad-checksum"})


@dataclass(frozen=True)
class PlantedSecret:
    """A fake credential written at ``path:line`` (1-based; the line where it starts)."""

    path: str
    line: int
    rule_id: str
    kind: str
    secret: str
    syntax: str


@dataclass(frozen=True)
class Decoy:
    """Lines ``line`` to ``end_line`` of ``path`` hold a decoy of ``kind``."""

    path: str
    line: int
    end_line: int
    kind: str


@dataclass
class Manifest:
    """What a generated corpus holds (see the module docstring)."""

    seed: int
    files: int = 0
    bytes: int = 0
    planted: list[PlantedSecret] = field(default_factory=list)
    decoys: list[Decoy] = field(default_factory=list)
    raw_only: list[str] = field(default_factory=list)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=1), "utf-8")

    @classmethod
    def load(cls, path: Path) -> Manifest:
        data = json.loads(path.read_text("utf-8"))
        return cls(
            seed=data["seed"],
            files=data["files"],
            bytes=data["bytes"],
            planted=[PlantedSecret(**p) for p in data["planted"]],
            decoys=[Decoy(**d) for d in data["decoys"]],
            raw_only=data["raw_only"],
        )


@dataclass
class _Block:
    lines: list[str]
    rule: Rule | None = None  # planted: the rule, the secret, the line (0-based) it starts on
    secret: str = ""
    offset: int = 0
    decoy: str | None = None
    decoy_lines: tuple[int, ...] = ()  # when set: only these lines (0-based) are decoys


@dataclass
class _File:
    path: str
    syntax: Syntax | None
    target: int
    items: list[_Block] = field(default_factory=list)


def generate_corpus(
    root: Path,
    *,
    size_bytes: int,
    seed: int,
    secrets_per_mb: float = 250,
    decoys_per_mb: float = 250,
    rules: RuleSet | None = None,
) -> Manifest:
    """Writes a corpus of about ``size_bytes`` under ``root`` (created) and returns its manifest.

    Every provider rule is planted at least twice; about one planted secret in seven is a
    generic ``key = value`` secret.
    """
    rng = random.Random(seed)
    ruleset = rules if rules is not None else builtin_rules()
    providers = [rule for rule in ruleset.rules if not rule.generic]
    generic = next((rule for rule in ruleset.rules if rule.generic), None)
    manifest = Manifest(seed=seed)
    files = _plan_files(rng, size_bytes)
    writable = [f for f in files if f.syntax is not None]
    line_files = [f for f in writable if f.syntax is not None and f.syntax.lines_ok]
    pair_files = [f for f in writable if f.syntax is not None and f.syntax.generic_ok]
    megabytes = size_bytes / MB
    n_secrets = max(2 * len(providers), round(secrets_per_mb * megabytes))
    raw_only: set[str] = set()
    for index in range(n_secrets):
        if generic is not None and index % 7 == 6:
            target = rng.choice(pair_files)
            assert target.syntax is not None
            words = rng.choice(GENERIC_NAMES)
            value = generic_secret(rng)
            lines = rng.choice(target.syntax.assigns)(rng, words, value)
            target.items.append(_planted(generic, lines, value))
            continue
        rule = providers[index % len(providers)] if providers else None
        if rule is None:
            continue
        placed = _place_provider(rng, rule, writable, line_files, files)
        if placed is None:
            raw_only.add(rule.id)
    n_decoys = max(3 * len(MAKERS), round(decoys_per_mb * megabytes))
    kinds = sorted(MAKERS)
    for index in range(n_decoys):
        kind = kinds[index % len(kinds)]
        pool = writable if kind in _ASSIGN_DECOYS else line_files
        target = rng.choice(pool)
        assert target.syntax is not None
        lines = MAKERS[kind](rng, target.syntax, providers)
        target.items.append(_Block(lines, decoy=kind))
    manifest.raw_only = sorted(raw_only)
    root.mkdir(parents=True, exist_ok=True)
    for plan in files:
        _write(rng, root, plan, manifest)
    return manifest


def _planted(rule: Rule, lines: list[str], secret: str) -> _Block:
    text = "\n".join(lines)
    start = text.find(secret)
    offset = text.count("\n", 0, start) if start >= 0 else len(lines) - 1
    return _Block(lines, rule=rule, secret=secret, offset=offset)


def _place_provider(
    rng: random.Random,
    rule: Rule,
    writable: list[_File],
    line_files: list[_File],
    files: list[_File],
) -> bool | None:
    """Plants one sample of ``rule``; returns None when only the bare sample line fitted."""
    sample = generate(rule, rng)
    secret = sample_secret(rule, sample)
    assert secret is not None, f"{rule.id}: its regex does not match its own sample"
    if "\n" in sample:
        return _place_multiline(rng, rule, sample, secret, line_files, files)
    if sample == secret:
        for _ in range(_EMBED_TRIES):
            target = rng.choice(writable)
            assert target.syntax is not None
            ways = target.syntax.assigns + target.syntax.mentions
            words = tuple(rule.id.split("-")[:4])
            lines = rng.choice(ways)(rng, words, secret)
            if sample_secret(rule, "\n".join(lines)) == secret:
                target.items.append(_planted(rule, lines, secret))
                return True
    target = rng.choice(line_files)
    indent = rng.choice(("", "  ", "    "))
    lines = [indent + sample]
    if sample_secret(rule, lines[0]) != secret:
        lines = [sample]
    target.items.append(_planted(rule, lines, secret))
    return True if sample != secret else None


def _place_multiline(
    rng: random.Random,
    rule: Rule,
    sample: str,
    secret: str,
    line_files: list[_File],
    files: list[_File],
) -> bool:
    """A PEM block or other multi-line secret: alone in a key file, in a Python string, a YAML
    block or a shell here-document, whichever the rule's regex accepts."""
    body = sample.split("\n")
    pick = rng.randrange(4)
    if pick == 0:
        name = f"deploy/keys/{rule.id}-{len(files)}.{rng.choice(('pem', 'key'))}"
        files.append(_File(name, None, 0, [_planted(rule, body, secret)]))
        return True
    candidates = {
        "python": [f'{rule.id.replace("-", "_").upper()} = """', *body, '"""'],
        "yaml": ["  tls.key: |", *(f"    {line}" for line in body)],
        "shell": ["cat > /etc/ssl/private/server.key <<'EOF'", *body, "EOF"],
    }
    syntax_name = ("python", "yaml", "shell")[pick - 1]
    lines = candidates[syntax_name]
    found = sample_secret(rule, "\n".join(lines))
    pool = [f for f in line_files if f.syntax is not None and f.syntax.name == syntax_name]
    if found is None or not pool:
        lines, found = body, secret
        pool = line_files
    rng.choice(pool).items.append(_planted(rule, lines, found))
    return True


def _plan_files(rng: random.Random, size_bytes: int) -> list[_File]:
    files: list[_File] = []
    planned = 0
    weights = [syntax.weight for syntax in SYNTAXES]
    while planned < size_bytes:
        if rng.random() < 0.03:
            name, lines, hashes = lockfile(rng)
            folder = f"{rng.choice(('web', 'services/api', 'tools'))}/app{len(files)}/"
            block = _Block(lines, decoy="lockfile-hash", decoy_lines=tuple(hashes))
            plan = _File(f"{folder}{name}", None, 0, [block])
            planned += sum(len(line) + 1 for line in lines)
        else:
            syntax = rng.choices(SYNTAXES, weights)[0]
            if syntax.name == "minified":
                target = rng.randint(30_000, 250_000)
            else:
                target = int(min(60_000, max(600, rng.lognormvariate(8.6, 0.9))))
            plan = _File(syntax.path(rng), syntax, target)
            planned += target
        files.append(plan)
    seen: set[str] = set()
    for number, plan in enumerate(files):
        if plan.path in seen:
            stem, dot, ext = plan.path.rpartition(".")
            plan.path = (
                f"{stem}_{number}.{ext}" if dot and "/" not in ext else f"{plan.path}_{number}"
            )
        seen.add(plan.path)
    return files


def _write(rng: random.Random, root: Path, plan: _File, manifest: Manifest) -> None:
    blocks: list[_Block]
    if plan.syntax is None:
        blocks = plan.items
    else:
        syntax = plan.syntax
        filler: list[_Block] = []
        size = 0
        while size < plan.target:
            lines = syntax.filler(rng)
            kind = "minified-js" if syntax.name == "minified" else None
            filler.append(_Block(lines, decoy=kind))
            size += sum(len(line) + 1 for line in lines)
        for item in plan.items:
            filler.insert(rng.randint(0, len(filler)), item)
        blocks = [_Block(syntax.head(rng)), *filler, _Block(syntax.tail(rng))]
    text_lines: list[str] = []
    for block in blocks:
        first = len(text_lines) + 1
        block.lines = "\n".join(block.lines).split("\n")  # a sample may span lines
        text_lines.extend(block.lines)
        if block.rule is not None:
            manifest.planted.append(
                PlantedSecret(
                    path=plan.path,
                    line=first + block.offset,
                    rule_id=block.rule.id,
                    kind=block.rule.kind,
                    secret=block.secret,
                    syntax=plan.syntax.name if plan.syntax else "file",
                )
            )
        elif block.decoy is not None and block.decoy_lines:
            for index in block.decoy_lines:
                manifest.decoys.append(Decoy(plan.path, first + index, first + index, block.decoy))
        elif block.decoy is not None:
            manifest.decoys.append(
                Decoy(plan.path, first, first + len(block.lines) - 1, block.decoy)
            )
    data = ("\n".join(text_lines) + "\n").encode("utf-8")
    target = root / plan.path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    manifest.files += 1
    manifest.bytes += len(data)


__all__ = ["Decoy", "Manifest", "PlantedSecret", "generate_corpus", "minified_line"]

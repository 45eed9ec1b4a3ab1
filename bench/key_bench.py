"""Key management's benchmarks (issue 6), on SQLite: a project's data-key rotation over
100,000 secret versions end to end, next to raw AES-GCM over the same ciphertexts, and the
backups of the same vault.

1. **The vault.** ``coffer init --dir`` in a temporary directory; this process then opens the
   vault through ``bootstrap.build_services`` and creates project ``bench`` through
   ``ProjectService`` (data key version 1, wrapped under the vault's KEK), and opens its keys
   as a local operator command does (``bootstrap.operator.operator_vault``). ``--versions``
   (100,000) secret versions are written straight into ``secrets`` and ``secret_versions``
   (executemany, 20,000 versions a transaction): keys spread over the project's three
   environments, 5 versions each, random 24 to 64 character values, every ciphertext sealed
   by the project's real data key (``Keyring.data_key``, ``DataKey.seal``) under the real
   associated data (``secret_version_aad``): the rows ``SecretOps.write`` makes, without its
   per-write audit entry (1.4 ms a write through the service would make seeding take minutes).
   A server then reads 200 random versions back through the API (each value checked).
2. **rotate-key, end to end.** ``coffer server`` on the vault (pinned to the server's core,
   rate limits off), and ``coffer rotate-key -p bench --json`` (the default batch, 2,000) run
   as a user types it, timed from its start to its exit (Python start-up included); the
   server's CPU time meanwhile. Afterwards the rotation status (key version 2, nothing left,
   old key destroyed) and 200 random versions read back with their values.
3. **Baselines over the same 100,000 ciphertexts** (read from the database before the
   rotation, in this process): *raw AES-GCM* is ``AESGCM(key).decrypt`` then ``.encrypt``
   with a fresh 12-byte nonce under a second key, one ``AESGCM`` object per key, the
   associated data built beforehand; *coffer's reseal* is ``DataKey.reseal`` with the
   associated data built per version, as a rotation step does. The ratio end-to-end /
   raw is what the rotation's database, HTTP and Python cost on top of the cryptography.
4. **Backups of that vault.** ``coffer backup create FILE``, ``coffer backup verify FILE``
   (a trial restore that decrypts every version) and ``coffer backup restore FILE --dir NEW
   --root-key-file KEY``, each timed from start to exit; the archive's size.

Target (issue 6): 100,000 versions rotated in under 10 s (judged only on a vault that large;
``--quick`` is a smoke run). Prints a table and PASS/FAIL, writes
``bench/results/keys-latest.json``; exits 0 either way, 1 when a value read back is wrong or
a command fails. ``--profile`` also rotates once more in this process under cProfile and
prints where the time goes. Usage::

    .venv/bin/python bench/key_bench.py [--versions N] [--quick] [--profile] [--no-pin]
    .venv/bin/python bench/run_all.py --only keys
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import datetime as dt
import functools
import io
import json
import os
import pstats
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

sys.path.insert(0, str(Path(__file__).resolve().parent))

from audit_bench import Vault, _loadavg, _revision, _src_changes, init_vault, log
from coffer.bootstrap import build_services
from coffer.bootstrap.operator import operator_vault
from coffer.config import Settings
from coffer.crypto.aad import secret_version_aad
from coffer.crypto.keys import DataKey
from coffer.domain.models import CallContext, Environment, Project
from coffer.services.container import Services
from coffer.services.keyring import Keyring
from coffer.services.lookup import require_environment, require_project
from coffer.storage.ids import new_id
from coffer.storage.tables import secret_versions
from coffer.storage.tables import secrets as secrets_table
from server_process import (
    BIN,
    CpuPlan,
    ServerHandle,
    cpu_plan,
    pin_self,
    process_cpu_seconds,
    spawned_server,
)

RESULTS_DIR = Path(__file__).resolve().parent / "results"
PROJECT = "bench"
ENVIRONMENTS = ("development", "staging", "production")
VERSIONS_PER_KEY = 5
FULL_SIZE = 100_000
QUICK_SIZE = 10_000
ROTATE_TARGET_S = 10.0
INSERT_BATCH = 20_000
SAMPLE = 200
NONCE_BYTES = 12
ENVELOPE_HEADER = 1 + NONCE_BYTES  # version byte, nonce (coffer.crypto.aead's envelope)
COMMAND_TIMEOUT_S = 1800.0


@dataclass(frozen=True)
class Seeded:
    """One stored version as the bench wrote it: where it is, its value, its ciphertext
    and the associated data it was sealed with."""

    environment: str
    key: str
    version: int
    value: str
    ciphertext: bytes
    aad: bytes
    new_aad: bytes  # the associated data under data-key version 2


# --- the vault ----------------------------------------------------------------------------


def _context(services: Services, token: str) -> CallContext:
    return CallContext(actor=services.auth.authenticate(token), source_ip="127.0.0.1")


def seed_versions(vault: Vault, count: int, rng: random.Random) -> tuple[list[Seeded], bytes]:
    """Creates project ``bench`` through the service, writes ``count`` versions into it
    with its real data key, and returns them with that key's bytes (for the baseline)."""
    settings = Settings.from_env(directory=vault.directory)
    services = build_services(settings)
    try:
        ctx = _context(services, vault.token)
        services.projects.create(ctx, PROJECT)
        engine = services.engine
        with operator_vault(settings) as opened, engine.connect() as conn:
            project = require_project(conn, ctx.actor, PROJECT)
            envs = {name: require_environment(conn, project, name) for name in ENVIRONMENTS}
            data_key = Keyring(opened.opened.keks).data_key(conn, project, 1)
        seeded = _plan(project, envs, data_key, count, rng)
        now = time.time()
        secret_rows: list[dict[str, Any]] = []
        version_rows: list[dict[str, Any]] = []
        ids: dict[tuple[str, str], str] = {}
        for item in seeded:
            place = (item.environment, item.key)
            if place not in ids:
                ids[place] = new_id()
                secret_rows.append(
                    {
                        "id": ids[place],
                        "environment_id": envs[item.environment].id,
                        "key": item.key,
                        "current_version": VERSIONS_PER_KEY,
                        "created_at": now,
                        "updated_at": now,
                    }
                )
            version_rows.append(
                {
                    "secret_id": ids[place],
                    "version": item.version,
                    "ciphertext": item.ciphertext,
                    "key_version": 1,
                    "author_id": ctx.actor.id,
                    "author_kind": str(ctx.actor.kind),
                    "comment": None,
                    "created_at": now,
                }
            )
        with engine.begin() as conn:
            conn.execute(sa.insert(secrets_table), secret_rows)
        for start in range(0, len(version_rows), INSERT_BATCH):
            with engine.begin() as conn:
                conn.execute(sa.insert(secret_versions), version_rows[start : start + INSERT_BATCH])
        # the baseline drives AESGCM with the data key's own bytes (bench-only access)
        return seeded, data_key._material
    finally:
        services.close()


def _plan(
    project: Project,
    envs: dict[str, Environment],
    data_key: DataKey,
    count: int,
    rng: random.Random,
) -> list[Seeded]:
    """``count`` versions: keys spread over the environments, VERSIONS_PER_KEY each (the
    last key fewer when ``count`` is not a multiple), sealed as ``SecretCipher.seal``
    seals them."""
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"
    seeded = []
    for index in range(count):
        number, version = divmod(index, VERSIONS_PER_KEY)
        environment = ENVIRONMENTS[number % len(ENVIRONMENTS)]
        key = f"svc{number % 50:02d}/key_{number:06d}"
        value = "".join(rng.choices(alphabet, k=rng.randint(24, 64)))

        bound = functools.partial(
            secret_version_aad,
            org_id=project.org_id,
            project_id=project.id,
            environment_id=envs[environment].id,
            key=key,
            version=version + 1,
        )
        seeded.append(
            Seeded(
                environment=environment,
                key=key,
                version=version + 1,
                value=value,
                ciphertext=data_key.seal(value.encode(), bound(key_version=1)),
                aad=bound(key_version=1),
                new_aad=bound(key_version=2),
            )
        )
    return seeded


def check_sample(server: ServerHandle, seeded: list[Seeded], rng: random.Random) -> list[str]:
    """Reads SAMPLE random versions through the API; returns what did not come back right."""
    wrong = []
    with httpx.Client(base_url=server.base_url, headers=server.auth(), timeout=30.0) as client:
        for item in rng.sample(seeded, min(SAMPLE, len(seeded))):
            path = server.secret_path(PROJECT, item.environment, item.key)
            answer = client.get(path, params={"version": item.version})
            if answer.status_code != 200 or answer.json().get("value") != item.value:
                wrong.append(
                    f"{item.key} v{item.version}: {answer.status_code} {answer.text[:120]}"
                )
    return wrong


# --- measurements ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    """One CLI command's run: wall seconds, exit code, its JSON output (or text)."""

    seconds: float
    code: int
    output: Any
    stderr: str


def run_command(args: list[str], env: dict[str, str]) -> Command:
    """Runs ``coffer ARGS`` (the console script, as a user types it) and times it."""
    started = time.perf_counter()
    done = subprocess.run(
        [str(BIN / "coffer"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )
    seconds = time.perf_counter() - started
    try:
        output: Any = json.loads(done.stdout)
    except ValueError:
        output = done.stdout
    return Command(seconds, done.returncode, output, done.stderr.strip())


def raw_baseline(seeded: list[Seeded], key: bytes) -> float:
    """Seconds to decrypt every ciphertext with AESGCM and encrypt it again under another
    key with a fresh nonce (the associated data built beforehand)."""
    old, new = AESGCM(key), AESGCM(AESGCM.generate_key(bit_length=256))
    jobs = [(s.ciphertext[1:ENVELOPE_HEADER], s.ciphertext[ENVELOPE_HEADER:], s) for s in seeded]
    started = time.perf_counter()
    for nonce, body, item in jobs:
        plain = old.decrypt(nonce, body, item.aad)
        new.encrypt(os.urandom(NONCE_BYTES), plain, item.new_aad)
    return time.perf_counter() - started


def reseal_baseline(seeded: list[Seeded], key: bytes, project: dict[str, str]) -> float:
    """Seconds for ``DataKey.reseal`` of every ciphertext, building both associated data per
    version as a rotation step does."""
    old, target = DataKey(key), DataKey.generate()
    started = time.perf_counter()
    for item in seeded:
        bound = functools.partial(
            secret_version_aad,
            org_id=project["org_id"],
            project_id=project["project_id"],
            environment_id=project[item.environment],
            key=item.key,
            version=item.version,
        )
        old.reseal(item.ciphertext, bound(key_version=1), target, bound(key_version=2))
    return time.perf_counter() - started


def project_ids(vault: Vault) -> dict[str, str]:
    """The ids the associated data binds: org, project and each environment."""
    engine = sa.create_engine(f"sqlite:///{vault.directory / 'coffer.db'}")
    try:
        with engine.connect() as conn:
            row = conn.execute(
                sa.text("SELECT id, org_id FROM projects WHERE name = :n"), {"n": PROJECT}
            ).one()
            envs = conn.execute(
                sa.text("SELECT name, id FROM environments WHERE project_id = :p"), {"p": row[0]}
            ).all()
    finally:
        engine.dispose()
    return {"project_id": row[0], "org_id": row[1], **{name: id_ for name, id_ in envs}}


def profile_rotation(vault: Vault, top: int = 25) -> str:
    """Rotates the project's key once more in this process (the steps the server runs, no
    HTTP) under cProfile; returns the top functions by cumulative time."""
    services = build_services(Settings.from_env(directory=vault.directory))
    try:
        ctx = _context(services, vault.token)
        rotation = services.key_rotation
        profiler = cProfile.Profile()
        profiler.enable()
        rotation.start(ctx, PROJECT)
        cursor: str | None = None
        while True:
            step = rotation.step(ctx, PROJECT, cursor=cursor)
            if step.done:
                break
            cursor = step.cursor
        profiler.disable()
    finally:
        services.close()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(top)
    return out.getvalue()


# --- the run ----------------------------------------------------------------------------------


@contextlib.contextmanager
def vault_server(vault: Vault, plan: CpuPlan, workdir: Path) -> Iterator[ServerHandle]:
    with spawned_server(
        [str(BIN / "coffer"), "server"],
        directory=vault.directory,
        env=vault.env,
        log_path=workdir / "server.log",
        cpus=plan.server,
        label="keys",
        token=vault.token,
        database="sqlite",
    ) as handle:
        yield handle


def bench(args: argparse.Namespace, plan: CpuPlan, workdir: Path) -> dict[str, Any]:
    rng = random.Random(args.seed)
    vault = init_vault(workdir / "vault", None)
    env = {**vault.env, "COFFER_ADDR": "", "COFFER_TOKEN": vault.token}
    started = time.perf_counter()
    seeded, key = seed_versions(vault, args.versions, rng)
    seconds_seed = time.perf_counter() - started
    log(f"[keys] seeded {len(seeded):,} versions in {seconds_seed:.1f} s")
    result: dict[str, Any] = {
        "versions": len(seeded),
        "seed_s": seconds_seed,
        "database_bytes": (vault.directory / "coffer.db").stat().st_size,
        "problems": [],
    }
    problems: list[str] = result["problems"]
    with vault_server(vault, plan, workdir) as server:
        env["COFFER_ADDR"] = server.base_url
        problems += check_sample(server, seeded, rng)
        cpu_before = process_cpu_seconds(server.pid)
        rotate = run_command(["rotate-key", "-p", PROJECT, "--json"], env)
        cpu_after = process_cpu_seconds(server.pid)
        log(f"[keys] rotate-key: {rotate.seconds:.2f} s, exit {rotate.code}")
        if rotate.code != 0:
            problems.append(f"rotate-key exited {rotate.code}: {rotate.stderr}")
        with httpx.Client(base_url=server.base_url, headers=server.auth()) as client:
            status = client.get(f"/api/v1/projects/{PROJECT}/key-rotation").json()
        if (status["key_version"], status["remaining_versions"], status["running"]) != (
            2,
            0,
            False,
        ):
            problems.append(f"after rotate-key: {status}")
        problems += check_sample(server, seeded, rng)
    result["rotate"] = {
        "seconds": rotate.seconds,
        "versions_per_s": len(seeded) / rotate.seconds,
        "server_cpu_s": (
            cpu_after - cpu_before if cpu_after is not None and cpu_before is not None else None
        ),
        "output": rotate.output,
        "status": status,
    }
    result["cli_startup_s"] = run_command(["rotate-key", "--help"], env).seconds
    result["raw_s"] = raw_baseline(seeded, key)
    result["reseal_s"] = reseal_baseline(seeded, key, project_ids(vault))
    log(f"[keys] raw AES-GCM {result['raw_s']:.2f} s, DataKey.reseal {result['reseal_s']:.2f} s")
    result["backup"] = bench_backups(vault, workdir, problems)
    if args.profile:
        result["profile"] = profile_rotation(vault)
    return result


def bench_backups(vault: Vault, workdir: Path, problems: list[str]) -> dict[str, Any]:
    """Times ``backup create``, ``backup verify`` and ``backup restore`` of the vault."""
    archive = workdir / "vault.backup"
    directory = ["--dir", str(vault.directory)]
    runs = {
        "create": run_command(["backup", "create", str(archive), *directory, "--json"], vault.env),
    }
    if runs["create"].code == 0:
        runs["verify"] = run_command(
            ["backup", "verify", str(archive), *directory, "--json"], vault.env
        )
        restored = workdir / "restored"
        key_file = ["--root-key-file", str(vault.directory / "root.key")]
        runs["restore"] = run_command(
            ["backup", "restore", str(archive), "--dir", str(restored), *key_file, "--json"],
            vault.env,
        )
    figures: dict[str, Any] = {}
    for name, run in runs.items():
        log(f"[keys] backup {name}: {run.seconds:.2f} s, exit {run.code}")
        if run.code != 0:
            problems.append(f"backup {name} exited {run.code}: {run.stderr}")
        figures[name] = {"seconds": run.seconds, "output": run.output}
    if archive.exists():
        figures["archive_bytes"] = archive.stat().st_size
    return figures


def report(results: dict[str, Any]) -> str:
    meta, keys = results["meta"], results["keys"]
    rotate, backup = keys["rotate"], keys["backup"]
    versions = keys["versions"]
    lines = [
        "",
        f"key management benchmarks  {meta['date']}  revision {meta['revision']}  "
        f"({meta['cpus']} CPUs; {meta['pinning']})",
        f"load average before/after: {meta['loadavg_before']} / {meta['loadavg_after']}",
        f"vault: {versions:,} secret versions in project {PROJECT} (SQLite, "
        f"{keys['database_bytes'] / 1e6:.1f} MB), seeded in {keys['seed_s']:.1f} s",
        "",
        f"{'what':<52}{'seconds':>9}{'versions/s':>12}{'x raw':>8}",
    ]

    def row(label: str, seconds: float | None) -> None:
        if seconds is None:
            return
        ratio = seconds / keys["raw_s"] if keys["raw_s"] else float("nan")
        lines.append(f"{label:<52}{seconds:>9.2f}{versions / seconds:>12,.0f}{ratio:>8.1f}")

    row("coffer rotate-key -p bench (end to end)", rotate["seconds"])
    row("raw AES-GCM decrypt + encrypt (baseline)", keys["raw_s"])
    row("DataKey.reseal + associated data (coffer's crypto)", keys["reseal_s"])
    for name in ("create", "verify", "restore"):
        if name in backup:
            row(f"coffer backup {name}", backup[name]["seconds"])
    if rotate["server_cpu_s"] is not None:
        lines.append(f"server CPU during rotate-key: {rotate['server_cpu_s']:.2f} s")
    if "archive_bytes" in backup:
        lines.append(f"backup archive: {backup['archive_bytes'] / 1e6:.1f} MB")
    if keys.get("cli_startup_s") is not None:
        lines.append(f"CLI start-up (coffer rotate-key --help): {keys['cli_startup_s']:.2f} s")
    if versions >= FULL_SIZE:
        verdict = "PASS" if rotate["seconds"] < ROTATE_TARGET_S else "FAIL"
    else:  # a smaller vault says little: the CLI's start-up weighs more
        verdict = "n/a "
    lines += [
        "",
        "targets:",
        f"  {verdict}  rotate 100,000 versions in under {ROTATE_TARGET_S:.0f} s: "
        f"{rotate['seconds']:.2f} s for {versions:,}",
    ]
    if keys["problems"]:
        lines.append("  WRONG: " + "; ".join(keys["problems"][:5]))
    if keys.get("profile"):
        lines += ["", "in-process rotation under cProfile:", keys["profile"]]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--versions", type=int, default=None, help="default 100,000")
    parser.add_argument("--seed", type=int, default=6, help="random seed of the values")
    parser.add_argument("--profile", action="store_true", help="cProfile a rotation in-process")
    parser.add_argument("--no-pin", action="store_true")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_SIZE:,} versions")
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "keys-latest.json")
    args = parser.parse_args(argv)
    args.versions = args.versions or (QUICK_SIZE if args.quick else FULL_SIZE)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan = cpu_plan(pin=not args.no_pin)
    pin_self(plan.client)
    started = time.monotonic()
    results: dict[str, Any] = {
        "meta": {
            "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "cpus": os.cpu_count(),
            "revision": _revision(),
            "src_changes": _src_changes(),
            "command": " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]),
            "pinning": plan.describe(),
            "loadavg_before": _loadavg(),
        }
    }
    workdir = Path(tempfile.mkdtemp(prefix="coffer-bench-keys-"))
    try:
        results["keys"] = bench(args, plan, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    results["meta"]["loadavg_after"] = _loadavg()
    results["meta"]["elapsed_s"] = round(time.monotonic() - started, 1)
    print(report(results))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"\nresults: {args.output}  (took {results['meta']['elapsed_s']:.0f} s)")
    return 1 if results["keys"]["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())

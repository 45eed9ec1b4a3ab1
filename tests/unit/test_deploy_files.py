"""The deployment files in ``deploy/`` and the guide ``docs/deployment.md`` stay true to the
code: the Kubernetes manifest parses into the objects the guide describes, wired together
(selectors, ports, probes), and every command line they give ``coffer`` (systemd's ExecStart,
the container's ENTRYPOINT + CMD, the pods' args) is one the CLI accepts, flag by flag. Every
``COFFER_*`` variable they name is one coffer reads."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from typer.core import TyperGroup

from coffer.cli.app import app
from coffer.config import VARIABLES

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
GUIDE = ROOT / "docs" / "deployment.md"
PORT = 8390
ALL_INTERFACES = "0.0.0.0"  # noqa: S104 - what a node behind a load balancer listens on


def coffer_accepts(args: list[str]) -> str:
    """Parses ``coffer ARGS`` exactly as the CLI would, without running it; returns the
    command's name. Fails the test on an unknown command, flag or value."""
    group = typer.main.get_command(app)
    assert isinstance(group, TyperGroup)
    name, *rest = args
    command = group.commands.get(name)
    assert command is not None, f"coffer has no command {name!r}"
    try:
        command.make_context(f"coffer {name}", list(rest))
    except typer.TyperException as exc:  # typer's usage errors (unknown flag, bad value)
        pytest.fail(f"coffer {' '.join(args)}: {exc}")
    return name


def manifest() -> list[dict[str, Any]]:
    with (DEPLOY / "kubernetes.yaml").open(encoding="utf-8") as stream:
        return [doc for doc in yaml.safe_load_all(stream) if doc is not None]


def find(kind: str, name: str) -> dict[str, Any]:
    found = [d for d in manifest() if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def test_the_manifest_parses_into_coffer_postgresql_and_redis_in_one_namespace() -> None:
    """Every document is a Kubernetes object with apiVersion, kind and name, in the namespace
    ``coffer``; together they are the nodes, their Service, Secret and settings, a disruption
    budget, and a PostgreSQL and a Redis with their Services."""
    objects = manifest()
    assert all({"apiVersion", "kind", "metadata"} <= set(d) for d in objects)
    assert sorted((d["kind"], d["metadata"]["name"]) for d in objects) == [
        ("ConfigMap", "coffer"),
        ("Deployment", "coffer"),
        ("Deployment", "coffer-redis"),
        ("Namespace", "coffer"),
        ("PodDisruptionBudget", "coffer"),
        ("Secret", "coffer"),
        ("Service", "coffer"),
        ("Service", "coffer-postgres"),
        ("Service", "coffer-redis"),
        ("StatefulSet", "coffer-postgres"),
    ]
    assert {d["metadata"].get("namespace") for d in objects if d["kind"] != "Namespace"} == {
        "coffer"
    }


def test_every_service_and_workload_selects_its_own_pods_on_a_named_port() -> None:
    """Each Service and workload selector matches its pod template's labels, and each Service
    targets a port its pods name."""
    for workload, service in (
        (find("Deployment", "coffer"), find("Service", "coffer")),
        (find("StatefulSet", "coffer-postgres"), find("Service", "coffer-postgres")),
        (find("Deployment", "coffer-redis"), find("Service", "coffer-redis")),
    ):
        labels = workload["spec"]["template"]["metadata"]["labels"]
        assert workload["spec"]["selector"]["matchLabels"] == labels
        assert service["spec"]["selector"] == labels
        ports = {
            port["name"]
            for container in workload["spec"]["template"]["spec"]["containers"]
            for port in container.get("ports", [])
        }
        assert {port["targetPort"] for port in service["spec"]["ports"]} <= ports


def test_the_nodes_run_coffer_server_and_are_probed_on_readyz_and_healthz() -> None:
    """The node containers run ``coffer server --no-init`` on 0.0.0.0 and the port they
    expose, after an init container running ``coffer migrate``; readiness is /readyz,
    liveness /healthz; every COFFER_* variable they set exists; the node id is the pod's name;
    the root key comes from the Secret."""
    deployment = find("Deployment", "coffer")
    pod = deployment["spec"]["template"]["spec"]
    (node,) = pod["containers"]
    (migrate,) = pod["initContainers"]
    assert coffer_accepts(node["args"]) == "server"
    assert node["args"] == ["server", "--no-init", "--host", ALL_INTERFACES, "--port", str(PORT)]
    assert coffer_accepts(migrate["args"]) == "migrate"
    assert node["ports"] == [{"name": "http", "containerPort": PORT}]
    assert node["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert node["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    for container in (node, migrate):
        env = {item["name"]: item for item in container["env"]}
        assert {n for n in env if n.startswith("COFFER_")} <= set(VARIABLES)
        assert env["COFFER_NODE_ID"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
        assert env["COFFER_ROOT_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "coffer"
        assert env["COFFER_DATABASE_URL"]["value"].startswith("postgresql+psycopg://")
        assert env["COFFER_REDIS_URL"]["value"].startswith("redis://")
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
    secret_keys = set(find("Secret", "coffer")["stringData"])
    config = find("ConfigMap", "coffer")["data"]
    assert {"COFFER_ROOT_KEY", "POSTGRES_PASSWORD", "REDIS_PASSWORD"} == secret_keys
    assert set(config) <= set(VARIABLES)
    assert pod["securityContext"]["runAsNonRoot"] is True


def unit_settings(text: str) -> dict[str, str]:
    """``Key=Value`` lines of a systemd unit (the last one wins)."""
    settings: dict[str, str] = {}
    for line in text.splitlines():
        if line and not line.startswith(("#", "[")) and "=" in line:
            key, value = line.split("=", 1)
            settings[key.strip()] = value.strip()
    return settings


def test_the_systemd_unit_runs_coffer_server_as_its_own_user() -> None:
    """ExecStart is the installed ``coffer server`` with flags the CLI accepts, listening on
    0.0.0.0 without ever initialising a vault; it runs as ``coffer``, restarts on failure and
    stops with SIGTERM."""
    unit = unit_settings((DEPLOY / "coffer.service").read_text(encoding="utf-8"))
    program, *args = shlex.split(unit["ExecStart"])
    assert program.endswith("/bin/coffer")
    assert coffer_accepts(args) == "server"
    assert "--no-init" in args and args[args.index("--host") + 1] == ALL_INTERFACES
    assert (unit["User"], unit["Restart"], unit["KillSignal"]) == (
        "coffer",
        "on-failure",
        "SIGTERM",
    )
    assert unit["EnvironmentFile"] == "/etc/coffer/coffer.env"


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Containerfile, continuation lines joined."""
    joined = re.sub(r"\\\n", " ", text)
    instructions = []
    for line in joined.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            word, _, rest = stripped.partition(" ")
            instructions.append((word.upper(), rest.strip()))
    return instructions


def test_the_container_is_a_non_root_coffer_server_on_python_3_11_slim() -> None:
    """The image is python:3.11-slim with coffer pip-installed, runs as a user other than
    root, and its ENTRYPOINT + CMD is ``coffer server --no-init --host 0.0.0.0`` (flags the
    CLI accepts); it exposes the port and its health check asks /healthz."""
    steps = dockerfile_instructions((DEPLOY / "Containerfile").read_text(encoding="utf-8"))
    by_kind: dict[str, list[str]] = {}
    for kind, rest in steps:
        by_kind.setdefault(kind, []).append(rest)
    assert by_kind["FROM"] == ["python:3.11-slim"]
    assert any("pip install ." in run for run in by_kind["RUN"])
    assert by_kind["USER"] == ["coffer"]
    assert by_kind["EXPOSE"] == [str(PORT)]
    entrypoint, command = json.loads(by_kind["ENTRYPOINT"][0]), json.loads(by_kind["CMD"][0])
    assert entrypoint == ["coffer"]
    assert coffer_accepts(command) == "server"
    assert command == ["server", "--no-init", "--host", ALL_INTERFACES]
    (healthcheck,) = by_kind["HEALTHCHECK"]
    assert "/healthz" in healthcheck


def test_every_setting_the_guide_and_deploy_files_name_is_one_coffer_reads() -> None:
    """Each ``COFFER_*`` name in docs/deployment.md and deploy/ is in ``config.VARIABLES``
    (a name ending in ``_``, as in ``COFFER_LOGIN_*``, is a prefix of some); the guide names
    each setting the issue asks it to explain."""
    texts = [GUIDE.read_text(encoding="utf-8")]
    texts += [path.read_text(encoding="utf-8") for path in sorted(DEPLOY.iterdir())]
    named = {name for text in texts for name in re.findall(r"COFFER_[A-Z0-9_]+", text)}
    unknown = {
        name
        for name in named
        if name not in VARIABLES
        and not (name.endswith("_") and any(v.startswith(name) for v in VARIABLES))
    }
    assert unknown == set()
    guide = texts[0]
    for setting in (
        "COFFER_DATABASE_URL",
        "COFFER_REDIS_URL",
        "COFFER_ROOT_KEY",
        "COFFER_ROOT_KEY_FILE",
        "COFFER_WORKERS",
        "COFFER_NODE_ID",
        "COFFER_CACHE_SECONDS",
        "COFFER_JOB_LEASE_SECONDS",
        "COFFER_TRUSTED_PROXIES",
        "COFFER_TLS_CERT",
    ):
        assert (
            f"| `{setting}`" in guide or f"`{setting}` /" in guide or f"/ `{setting}`" in guide
        ), setting

"""The production stack (docker-compose.yml, Dockerfile, .dockerignore), checked without a Docker engine.

No engine runs here, so what can be checked is checked with PyYAML and a small implementation of Compose's
variable interpolation. When a `docker compose` CLI is installed and works (`config` needs no engine), the
file is also validated by it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from workers.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

NODES = ("couchdb1", "couchdb2", "couchdb3")
SERVICES = (*NODES, "cluster-setup", "init", "workers", "scheduler")
REQUIRED_VARS = ("COUCHDB_PASSWORD", "COUCHDB_SECRET", "ERLANG_COOKIE")
DUMMY_ENV = {
    "COUCHDB_USER": "dummyadmin",
    "COUCHDB_PASSWORD": "dummy-password-4f9a",
    "COUCHDB_SECRET": "dummy-secret-81c2",
    "ERLANG_COOKIE": "dummy-cookie-77d0",
}
LOOPBACK = {"127.0.0.1", "::1", "[::1]", "localhost"}
CREDENTIAL_KEY = re.compile(r"PASSWORD|SECRET|COOKIE|TOKEN", re.IGNORECASE)
# One whole ${VAR...} interpolation and nothing else.
ONE_INTERPOLATION = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*(?::?[-?+][^}]*)?\}$")
_VAR = re.compile(r"\$(?:(\$)|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))")

# A $ that is neither $$ nor the start of a valid interpolation.
_LONE_DOLLAR = re.compile(r"(?<!\$)(?:\$\$)*\$(?![$A-Za-z_]|\{[A-Za-z_][A-Za-z0-9_]*(?::?[-?+][^}]*)?\})")


class MissingVariable(Exception):
    pass


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's interpolation: $$, $VAR, ${VAR}, ${VAR:-d}, ${VAR-d}, ${VAR:?e}, ${VAR?e}, ${VAR:+a}..."""

    def one(match: re.Match[str]) -> str:
        if match.group(1):
            return "$"
        name = match.group(2) or match.group(5)
        op, arg = match.group(3), match.group(4) or ""
        value = env.get(name)
        unset_or_empty = not value
        if op == ":-":
            return arg if unset_or_empty else str(value)
        if op == "-":
            return arg if value is None else value
        if op == ":?":
            if unset_or_empty:
                raise MissingVariable(f"{name}: {arg}")
            return str(value)
        if op == "?":
            if value is None:
                raise MissingVariable(f"{name}: {arg}")
            return value
        if op == ":+":
            return "" if unset_or_empty else arg
        if op == "+":
            return "" if value is None else arg
        return value or ""

    return _VAR.sub(one, text)


def interpolate_tree(node: Any, env: dict[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [interpolate_tree(item, env) for item in node]
    if isinstance(node, dict):
        return {key: interpolate_tree(value, env) for key, value in node.items()}
    return node


def strings(node: Any, path: str = "") -> list[tuple[str, str]]:
    """Every string value of a YAML tree with its path."""
    if isinstance(node, str):
        return [(path, node)]
    if isinstance(node, list):
        return [pair for i, item in enumerate(node) for pair in strings(item, f"{path}[{i}]")]
    if isinstance(node, dict):
        return [pair for key, value in node.items() for pair in strings(value, f"{path}.{key}")]
    return []


def env_of(service: dict[str, Any]) -> dict[str, str]:
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in environment)
    return {str(k): "" if v is None else str(v) for k, v in environment.items()}


def command_of(service: dict[str, Any]) -> list[str]:
    command = service.get("command")
    return command.split() if isinstance(command, str) else list(command or [])


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instruction, _, args = line.partition(" ")
            out.append((instruction.upper(), args.strip()))
    return out


def test_compose_parses_with_the_documented_services(services: dict[str, dict[str, Any]]) -> None:
    assert set(SERVICES) <= set(services), f"missing: {set(SERVICES) - set(services)}"


def test_couchdb_nodes_are_one_pinned_cluster(services: dict[str, dict[str, Any]]) -> None:
    envs = {name: env_of(services[name]) for name in NODES}
    nodenames = set()
    for name in NODES:
        service, env = services[name], envs[name]
        assert re.fullmatch(r"couchdb:3\.5(\.\d+)?", service["image"]), service["image"]  # the version CI tests
        assert re.fullmatch(rf"{name}\.[a-z0-9-]+(\.[a-z0-9-]+)*", env["NODENAME"]), env["NODENAME"]
        nodenames.add(env["NODENAME"])
        # the other nodes reach this one by its node name
        aliases = service["networks"]["default"]["aliases"]
        assert env["NODENAME"] in aliases
        health = " ".join(service["healthcheck"]["test"])
        assert "curl" in health and "/_up" in health
        for key in ("COUCHDB_USER", "COUCHDB_PASSWORD", "COUCHDB_SECRET", "COUCHDB_ERLANG_COOKIE"):
            assert key in env, f"{name} lacks {key}"
    assert len(nodenames) == 3
    for key in ("COUCHDB_USER", "COUCHDB_PASSWORD", "COUCHDB_SECRET", "COUCHDB_ERLANG_COOKIE"):
        assert len({envs[name][key] for name in NODES}) == 1, f"{key} differs between the nodes"
    first = envs["couchdb1"]
    assert first["COUCHDB_PASSWORD"].startswith("${COUCHDB_PASSWORD:?")
    assert first["COUCHDB_SECRET"].startswith("${COUCHDB_SECRET:?")
    assert first["COUCHDB_ERLANG_COOKIE"].startswith("${ERLANG_COOKIE:?")


def test_each_node_has_its_own_declared_volume(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    declared = compose.get("volumes") or {}
    used = []
    for name in NODES:
        mounts = [
            (m["source"], m["target"]) if isinstance(m, dict) else tuple(m.split(":")[:2])
            for m in services[name].get("volumes", [])
        ]
        data = [source for source, target in mounts if target == "/opt/couchdb/data"]
        assert len(data) == 1, f"{name}: one volume on /opt/couchdb/data, got {mounts}"
        assert data[0] in declared, f"{name}: {data[0]} is not a named volume under top-level volumes"
        used.append(data[0])
    assert len(set(used)) == 3, f"the nodes share a volume: {used}"


def test_no_literal_credentials(compose: dict[str, Any]) -> None:
    for service_name, service in compose["services"].items():
        for key, value in env_of(service).items():
            if CREDENTIAL_KEY.search(key):
                assert ONE_INTERPOLATION.match(value), f"{service_name}.{key} is not a ${{...}} interpolation"
                assert ":-" not in value and not re.search(r"\$\{\w+-", value), (
                    f"{service_name}.{key} has a default value"
                )
    for path, value in strings(compose):
        # credentials inside URLs (http://user:password@host) are interpolations too
        for userinfo in re.findall(r"://([^/\s@]+)@", value):
            leftover = re.sub(r"\$\{[^}]*\}", "", userinfo)
            assert leftover in ("", ":"), f"{path}: literal credentials in a URL"
    text = COMPOSE.read_text(encoding="utf-8")
    for dummy in DUMMY_ENV.values():
        assert dummy not in text


def test_required_variables_are_required(compose: dict[str, Any]) -> None:
    interpolate_tree(compose, DUMMY_ENV)
    for missing in REQUIRED_VARS:
        env = {k: v for k, v in DUMMY_ENV.items() if k != missing}
        with pytest.raises(MissingVariable, match=missing):
            interpolate_tree(compose, env)


def _published(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(host_ip, published) of each port of a service, with the file's defaults."""
    out = []
    for port in service.get("ports", []):
        if isinstance(port, dict):
            out.append((interpolate(str(port.get("host_ip", "")), {}), str(port.get("published", ""))))
            continue
        parts = interpolate(str(port), {}).rsplit(":", 2)
        host_ip = parts[0] if len(parts) == 3 else ""
        published = parts[-2] if len(parts) >= 2 else ""
        out.append((host_ip, published))
    return out


def test_only_couchdb1_publishes_and_only_on_loopback(services: dict[str, dict[str, Any]]) -> None:
    publishing = {name for name, service in services.items() if service.get("ports")}
    assert publishing == {"couchdb1"}
    ports = _published(services["couchdb1"])
    assert ports, "couchdb1 publishes 5984"
    for host_ip, published in ports:
        assert host_ip in LOOPBACK, f"couchdb1 publishes on {host_ip or 'every address'}"
        assert published == "5984"


def test_cluster_setup_is_an_idempotent_one_shot(services: dict[str, dict[str, Any]]) -> None:
    setup = services["cluster-setup"]
    assert str(setup.get("restart", "no")) == "no"
    for name in NODES:
        assert setup["depends_on"][name]["condition"] == "service_healthy"
    command = setup["command"]
    script = command if isinstance(command, str) else "\n".join(command)
    for action in ("enable_cluster", "add_node", "finish_cluster", "_membership"):
        assert action in script, action
    # the script reads credentials from its environment at run time, not from Compose interpolation
    assert "${COUCHDB_PASSWORD" not in script
    bash = shutil.which("bash")
    if bash:
        shell_text = interpolate(script, {})
        check = subprocess.run([bash, "-n"], input=shell_text, text=True, capture_output=True, check=False)
        assert check.returncode == 0, check.stderr


def test_init_runs_after_the_cluster(services: dict[str, dict[str, Any]]) -> None:
    init = services["init"]
    assert command_of(init) == ["init"]
    assert init["depends_on"]["cluster-setup"]["condition"] == "service_completed_successfully"
    assert str(init.get("restart", "no")) == "no"


@pytest.mark.parametrize(("name", "command"), [("workers", ["work"]), ("scheduler", ["scheduler"])])
def test_fieldsync_services(services: dict[str, dict[str, Any]], name: str, command: list[str]) -> None:
    service = services[name]
    build = service["build"]
    assert (build if isinstance(build, str) else build.get("context", ".")) in (".", "./")
    assert service["image"] == "fieldsync:latest"
    entrypoint = service.get("entrypoint")
    assert entrypoint in (None, "fieldsync", ["fieldsync"]), "the image's ENTRYPOINT is fieldsync"
    assert command_of(service) == command
    assert service["depends_on"]["init"]["condition"] == "service_completed_successfully"
    assert service["restart"] == "unless-stopped"
    url = interpolate(env_of(service)["FIELDSYNC_COUCH_URL"], DUMMY_ENV)
    # every node, so that the workers fail over when one is lost (the path tests/integration/test_node_loss.py takes)
    assert url == (f"http://{DUMMY_ENV['COUCHDB_USER']}:{DUMMY_ENV['COUCHDB_PASSWORD']}@couchdb1:5984,"
                   "http://couchdb2:5984,http://couchdb3:5984")
    settings = Settings.from_env({"FIELDSYNC_COUCH_URL": url})
    assert settings.couch_nodes == [f"http://{n}:5984" for n in NODES]
    assert settings.credentials == (DUMMY_ENV["COUCHDB_USER"], DUMMY_ENV["COUCHDB_PASSWORD"])


def test_dockerfile_builds_the_package_for_fieldsync(dockerfile: list[tuple[str, str]]) -> None:
    instructions = [i for i, _ in dockerfile]
    first_from = next(args for i, args in dockerfile if i == "FROM")
    assert first_from.split()[0] == "python:3.11-slim"
    entrypoints = [json.loads(args) for i, args in dockerfile if i == "ENTRYPOINT"]
    assert entrypoints[-1] == ["fieldsync"]
    cmds = [json.loads(args) for i, args in dockerfile if i == "CMD"]
    assert cmds[-1] == ["work"]
    runs = " ".join(args for i, args in dockerfile if i == "RUN")
    assert re.search(r"pip install (--no-cache-dir )?\.(\s|$)", runs), "installs the package: pip install ."
    assert "[dev]" not in runs and "npm" not in runs and "nodejs" not in runs
    copied = " ".join(args for i, args in dockerfile if i == "COPY")
    for needed in ("pyproject.toml", "README.md", "workers", "validators", "summarizer", "couch_design"):
        assert needed in copied, f"the Dockerfile does not copy {needed}"
    users = [args for i, args in dockerfile if i == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "runs as a non-root user"
    assert instructions.index("USER") < instructions.index("ENTRYPOINT")


def test_dockerignore_keeps_the_context_small_but_complete() -> None:
    patterns = {
        line.strip().rstrip("/")
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    for excluded in (".venv", "server/node_modules", ".fieldsync", "tests", "bench", ".git"):
        assert excluded in patterns, excluded
    for needed in ("pyproject.toml", "README.md", "workers", "validators", "summarizer", "couch_design"):
        assert needed not in patterns, f"{needed} is needed by the Dockerfile"


def _compose_cli() -> list[str] | None:
    """A working Compose CLI (`docker compose` or `docker-compose`), or None."""
    candidates = []
    if shutil.which("docker"):
        candidates.append(["docker", "compose"])
    if shutil.which("docker-compose"):
        candidates.append(["docker-compose"])
    for cli in candidates:
        try:
            probe = subprocess.run([*cli, "version"], capture_output=True, text=True, timeout=30, check=False)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if probe.returncode == 0:
            return cli
    return None


def test_compose_config(compose: dict[str, Any]) -> None:
    """`docker compose config` when a Compose CLI works here; else the same checks on the YAML alone."""
    cli = _compose_cli()
    if cli is None:
        resolved = interpolate_tree(compose, DUMMY_ENV)
        assert set(SERVICES) <= set(resolved["services"])
        # Compose rejects a lone $ that does not start a variable (shell code must write $$)
        invalid = [
            (p, v[m.start() : m.start() + 20]) for p, v in strings(compose) for m in _LONE_DOLLAR.finditer(v)
        ]
        assert not invalid, f"invalid interpolation (write $$ for a literal $): {invalid}"
        return
    base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "DOCKER_CONFIG", "DOCKER_HOST")}
    run = subprocess.run(
        [*cli, "-f", str(COMPOSE), "config", "--format", "json"],
        cwd=ROOT,
        env={**base, **DUMMY_ENV},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    config = json.loads(run.stdout)
    assert set(SERVICES) <= set(config["services"])
    ports = config["services"]["couchdb1"]["ports"]
    assert all(port.get("host_ip") in LOOPBACK for port in ports)
    missing = subprocess.run(
        [*cli, "-f", str(COMPOSE), "config", "--quiet"],
        cwd=ROOT,
        env={**base, **{k: v for k, v in DUMMY_ENV.items() if k != "COUCHDB_PASSWORD"}},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert missing.returncode != 0 and "COUCHDB_PASSWORD" in missing.stderr

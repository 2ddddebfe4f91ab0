"""deploy/compose.yaml: the stack the issue asks for, checked by `docker compose config` where a
compose implementation is installed, and HAProxy's config by `haproxy -c`."""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import Any

import pytest

from shared.settings import Settings
from tests.deploy.tools import CI, DEPLOY, clean_env, documents, need, run

COMPOSE_FILE = DEPLOY / "compose.yaml"
COMPOSE = documents(COMPOSE_FILE)[0]
SERVICES: dict[str, Any] = COMPOSE["services"]
DEFAULT = re.compile(r"^\$\{(FAULTLINE_[A-Z_]+):-(.*)\}$")


def _compose_command() -> list[str] | None:
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


def test_docker_compose_config_accepts_the_file():
    command = _compose_command()
    if command is None:
        if CI and shutil.which("docker"):
            pytest.fail("docker is installed but has no compose: .ci/run installs docker-compose")
        pytest.skip("no docker compose here (docker's compose plugin or Debian's docker-compose)")
    checked = run(*command, "-f", str(COMPOSE_FILE), "config", env=clean_env())
    assert checked.returncode == 0, checked.stderr
    assert "FAULTLINE_HEALTH_FILE: /tmp/faultline-worker.json" in checked.stdout


def test_haproxy_accepts_the_balancer_config():
    haproxy = need("haproxy", "Debian package haproxy")
    checked = run(haproxy, "-c", "-f", str(DEPLOY / "haproxy" / "haproxy.cfg"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    cfg = (DEPLOY / "haproxy" / "haproxy.cfg").read_text()
    assert "option httpchk GET /readyz" in cfg and "gateway:8000" in cfg


def _env(service: str) -> dict[str, str]:
    return {k: str(v) for k, v in SERVICES[service]["environment"].items()}


def _resolved(service: str) -> dict[str, str]:
    """The service's environment as compose gives it with nothing set in the shell."""
    return {k: m.group(2) if (m := DEFAULT.match(v)) else v for k, v in _env(service).items()}


def test_the_stack_has_what_the_issue_lists():
    assert {"postgres", "redis", "migrate", "gateway", "worker", "query", "balancer"} <= set(SERVICES)
    assert SERVICES["gateway"]["deploy"]["replicas"] == 2
    assert SERVICES["worker"]["deploy"]["replicas"] == 2
    assert "--appendonly" in SERVICES["redis"]["command"]
    assert SERVICES["redis"]["command"][SERVICES["redis"]["command"].index("--appendonly") + 1] == "yes"
    named = set(COMPOSE["volumes"])
    for server, path in (("postgres", "/var/lib/postgresql/data"), ("redis", "/data")):
        (volume,) = SERVICES[server]["volumes"]
        name, mount = volume.split(":")
        assert name in named and mount == path
    assert SERVICES["migrate"]["command"] == ["migrate"] and SERVICES["migrate"]["restart"] == "no"
    for service in ("gateway", "worker", "query"):
        assert SERVICES[service]["command"] == [service]
        assert SERVICES[service]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert SERVICES[service]["image"] == SERVICES["migrate"]["image"]
    for service, probe in (("gateway", "8000/readyz"), ("query", "8001/readyz")):
        assert probe in " ".join(SERVICES[service]["healthcheck"]["test"])
    assert SERVICES["worker"]["healthcheck"]["test"][-3:] == ["-m", "services.worker.health", "--ready"]


def test_services_get_longer_to_stop_than_their_shutdown_grace():
    for service in ("gateway", "worker", "query"):
        grace = Settings.from_env(_resolved(service)).shutdown_grace
        stop = SERVICES[service]["stop_grace_period"]
        assert stop.endswith("s") and int(stop[:-1]) > grace


def test_tunable_defaults_are_the_codes_defaults():
    """`${FAULTLINE_X:-d}`: leaving X unset in the shell must mean what leaving it unset means to the code."""
    tunable = {}
    for name, value in _env("gateway").items():
        if m := DEFAULT.match(value):
            assert m.group(1) == name
            tunable[name] = m.group(2)
    assert len(tunable) >= 10
    base = Settings.from_env({})
    for name, value in tunable.items():
        if name == "FAULTLINE_LOG_FORMAT":  # read by logging set-up, not Settings: anything but text is JSON
            assert value != "text"
            continue
        assert Settings.from_env({name: value}) == base, name

"""The container image, the compose file, the load balancer's configuration and the dependency
lock: their basic facts, checked without Docker (CI has no Docker daemon)."""

from __future__ import annotations

import re
import tomllib

import yaml

from cds_service.config import env_var_names
from tests.conftest import REPO

DOCKERFILE = (REPO / "Dockerfile").read_text(encoding="utf-8")
COMPOSE = yaml.safe_load((REPO / "deploy" / "compose.yaml").read_text(encoding="utf-8"))
HAPROXY = (REPO / "deploy" / "haproxy.cfg").read_text(encoding="utf-8")


def _instructions(name: str) -> list[str]:
    joined = re.sub(r"\\\n", " ", DOCKERFILE)
    return [line.split(None, 1)[1] for line in joined.splitlines() if line.upper().startswith(name + " ")]


def test_the_image_is_slim_python_runs_as_a_non_root_user_and_has_a_health_check():
    bases = _instructions("FROM")
    assert bases and all(re.match(r"python:3\.11-slim", base) for base in bases)
    (user,) = _instructions("USER")
    assert user.split(":")[0] not in ("root", "0")
    assert "useradd" in DOCKERFILE and "--uid 10001" in DOCKERFILE
    (healthcheck,) = _instructions("HEALTHCHECK")
    assert "/health" in healthcheck
    assert _instructions("EXPOSE") == ["8080"]
    assert _instructions("ENTRYPOINT") == ['["calciphylaxis-cds"]'] and _instructions("CMD") == ['["serve"]']


def test_the_image_installs_the_locked_versions():
    assert "--constraint requirements.lock" in DOCKERFILE
    assert "COPY pyproject.toml requirements.lock" in DOCKERFILE
    ignored = (REPO / ".dockerignore").read_text().split()
    assert ".venv" in ignored and "var" in ignored and ".git" in ignored


def test_compose_runs_two_replicas_on_postgres_and_redis_behind_a_load_balancer():
    services = COMPOSE["services"]
    replicas = [name for name, spec in services.items() if spec.get("image") == "calciphylaxis-cds:latest"]
    assert len(replicas) >= 2
    for name in replicas:
        env = services[name]["environment"]
        assert env["CDS_DATABASE_URL"].startswith("postgresql://") and "@postgres:5432/" in env["CDS_DATABASE_URL"]
        assert env["CDS_REDIS_URL"].startswith("redis://redis:")
        assert int(env["CDS_WORKERS"]) >= 2 and env["CDS_HOST"] == "0.0.0.0"
        assert env["CDS_ISSUERS_FILE"] and env["CDS_PUBLIC_BASE_URL"] and env["CDS_METRICS_TOKEN"]
        unknown = set(env) - set(env_var_names())
        assert not unknown, f"compose sets settings that do not exist: {unknown}"
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["postgres"]["image"].startswith("postgres:") and "healthcheck" in services["postgres"]
    assert services["redis"]["image"].startswith("redis:") and "healthcheck" in services["redis"]
    assert services["lb"]["image"].startswith("haproxy:")
    assert "./haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro" in services["lb"]["volumes"]


def test_the_load_balancer_checks_readiness_sends_to_every_replica_and_hides_metrics():
    replicas = [name for name, spec in COMPOSE["services"].items() if spec.get("image") == "calciphylaxis-cds:latest"]
    for name in replicas:
        assert re.search(rf"^\s*server {name} {name}:8080 check", HAPROXY, re.M), name
    assert "option httpchk GET /ready" in HAPROXY and "http-check expect status 200" in HAPROXY
    assert re.search(r"http-request deny .*\{ path /metrics \}", HAPROXY)
    assert "retry-on conn-failure" in HAPROXY  # never resend a request whose token a replica has spent


def test_every_dependency_is_pinned_in_the_lock_file():
    """`make` installs with `-c requirements.lock`: a dependency missing from it would be installed
    unpinned. After changing pyproject.toml, run `make lock`."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        wanted += extra
    pinned = {}
    for line in (REPO / "requirements.lock").read_text().splitlines():
        match = re.match(r"([A-Za-z0-9_.\-]+)==(\S+)", line)
        if match:
            pinned[re.sub(r"[-_.]+", "-", match.group(1)).lower()] = match.group(2)
    missing = []
    for requirement in wanted:
        name = re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9_.\-]+", requirement).group(0)).lower()
        if name not in pinned:
            missing.append(name)
    assert not missing, f"not in requirements.lock (run `make lock`): {missing}"
    makefile = (REPO / "Makefile").read_text()
    assert "-c $(LOCK) -e ." in makefile and "-c $(LOCK) -e '.[test]'" in makefile

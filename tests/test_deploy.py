"""The container image, the compose file, the load balancer's configuration, the dependency locks
and the release files: their basic facts, checked without Docker (CI has no Docker daemon)."""

from __future__ import annotations

import datetime
import hashlib
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from cds_service.config import Settings, env_var_names, secret_file_env_names
from tests.conftest import REPO

DOCKERFILE = (REPO / "Dockerfile").read_text(encoding="utf-8")
COMPOSE = yaml.safe_load((REPO / "deploy" / "compose.yaml").read_text(encoding="utf-8"))
HAPROXY = (REPO / "deploy" / "haproxy.cfg").read_text(encoding="utf-8")
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
MAKEFILE = (REPO / "Makefile").read_text(encoding="utf-8")
RUNTIME_LOCK = REPO / "requirements-runtime.lock"

# The digest of the official Apache License 2.0 text (https://www.apache.org/licenses/LICENSE-2.0.txt).
APACHE_2_0_SHA256 = "cfc7749b96f63bd31c3c42b5c471bf756814053e847c10f3eb003417bc523d30"
DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")


def _instructions(name: str) -> list[str]:
    joined = re.sub(r"\\\n", " ", DOCKERFILE)
    return [line.split(None, 1)[1] for line in joined.splitlines() if line.upper().startswith(name + " ")]


def _build_args() -> dict[str, str]:
    """Each ARG's default (the first one given)."""
    args: dict[str, str] = {}
    for arg in _instructions("ARG"):
        name, _, default = arg.partition("=")
        args.setdefault(name.strip(), default.strip().strip('"'))
    return args


def _expand(text: str) -> str:
    args = _build_args()
    return re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], text)


def _labels() -> dict[str, str]:
    labels: dict[str, str] = {}
    for instruction in _instructions("LABEL"):
        for key, value in re.findall(r'(\S+?)="([^"]*)"', instruction):
            labels[key] = value
    return labels


def _env_file_secret(value: str) -> str:
    match = re.fullmatch(r"/run/secrets/([\w.-]+)", value)
    assert match, f"{value} is not a compose secret's file"
    return match.group(1)


def _cds_services() -> dict[str, dict]:
    return {name: spec for name, spec in COMPOSE["services"].items() if spec.get("image") == "calciphylaxis-cds:latest"}


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        match = re.match(r"([A-Za-z0-9_.\-]+)==([^\s;\\]+)", line)
        if match:
            pins[re.sub(r"[-_.]+", "-", match.group(1)).lower()] = match.group(2)
    return pins


def _name(requirement: str) -> str:
    return re.sub(r"[-_.]+", "-", re.match(r"[A-Za-z0-9_.\-]+", requirement).group(0)).lower()


# --- the image --------------------------------------------------------------------------------------


def test_the_image_is_slim_python_runs_as_a_non_root_user_and_has_a_health_check():
    bases = [_expand(base.split()[0]) for base in _instructions("FROM")]
    assert len(bases) == 2 and all(re.match(r"python:3\.11-slim", base) for base in bases)
    (user,) = _instructions("USER")
    assert user.split(":")[0] not in ("root", "0")
    assert "useradd" in DOCKERFILE and "--uid 10001" in DOCKERFILE
    (healthcheck,) = _instructions("HEALTHCHECK")
    assert "/health" in healthcheck
    assert _instructions("EXPOSE") == ["8080"]
    assert _instructions("ENTRYPOINT") == ['["calciphylaxis-cds"]'] and _instructions("CMD") == ['["serve"]']


def test_every_image_the_dockerfile_and_compose_name_is_pinned_by_digest():
    syntax = DOCKERFILE.splitlines()[0]
    assert syntax.startswith("# syntax=docker/dockerfile:") and DIGEST.search(syntax)
    for base in _instructions("FROM"):
        assert DIGEST.search(_expand(base.split()[0])), base
    for name, spec in COMPOSE["services"].items():
        if "build" in spec:  # built here from the Dockerfile above
            continue
        assert DIGEST.search(spec["image"]), f"{name}: {spec['image']} is a floating tag"


def test_the_image_installs_the_hashed_runtime_lock_and_builds_nothing_unpinned():
    assert "COPY pyproject.toml requirements-runtime.lock" in DOCKERFILE
    assert "--require-hashes --no-deps --only-binary=:all: -r requirements-runtime.lock" in DOCKERFILE
    # The project itself: built without fetching build tools, installed without its index.
    assert "pip wheel --no-deps --no-build-isolation" in DOCKERFILE
    assert "install --no-deps --no-index" in DOCKERFILE
    ignored = (REPO / ".dockerignore").read_text().split()
    assert ".venv" in ignored and "var" in ignored and ".git" in ignored
    assert "deploy/.env" in ignored and "deploy/secrets" in ignored  # secrets never reach a build context


def test_the_image_carries_oci_labels_matching_the_project():
    labels = _labels()
    for key in ("title", "description", "version", "revision", "created", "source", "licenses", "base.name"):
        assert f"org.opencontainers.image.{key}" in labels, key
    assert _expand(labels["org.opencontainers.image.version"]) == PYPROJECT["project"]["version"]
    assert labels["org.opencontainers.image.licenses"] == PYPROJECT["project"]["license"]
    assert labels["org.opencontainers.image.description"] == PYPROJECT["project"]["description"]


def test_the_image_keeps_the_default_sqlite_directory_on_a_volume(monkeypatch, tmp_path):
    (volume,) = _instructions("VOLUME")
    (path,) = yaml.safe_load(volume)
    # Where the default CDS_FEEDBACK_DB lands in the image: an installed package (no pyproject.toml
    # beside it) under XDG_DATA_HOME, which the image sets.
    env = dict(re.findall(r"(\w+)=(\S+)", " ".join(_instructions("ENV"))))
    monkeypatch.setattr("cds_service.config.PROJECT_DIR", tmp_path)
    monkeypatch.setenv("XDG_DATA_HOME", env["XDG_DATA_HOME"])
    monkeypatch.delenv("CDS_FEEDBACK_DB", raising=False)
    assert str(Settings().feedback_db.parent) == path
    assert f"mkdir -p {path}" in DOCKERFILE, "the volume's directory is made (and owned by cds) before VOLUME"


def test_the_image_builds_behind_a_private_index_and_a_tls_intercepting_proxy():
    args = _build_args()
    assert "PIP_INDEX_URL" in args and "CA_BUNDLE" in args
    assert "unset PIP_INDEX_URL" in DOCKERFILE  # empty = pip's default index
    assert "export PIP_CERT=" in DOCKERFILE and '"/context/${CA_BUNDLE}"' in DOCKERFILE
    assert "--mount=type=secret,id=pip.conf,target=/etc/pip.conf" in DOCKERFILE  # credentials, not a build arg


# --- compose and the load balancer ---------------------------------------------------------------


def test_compose_runs_two_replicas_on_postgres_and_redis_behind_a_load_balancer():
    services = COMPOSE["services"]
    replicas = _cds_services()
    assert len(replicas) >= 2
    known = set(env_var_names()) | set(secret_file_env_names())
    for name, spec in replicas.items():
        env = spec["environment"]
        assert env["CDS_DATABASE_URL"] == "postgresql://cds@postgres:5432/cds"
        assert env["CDS_REDIS_URL"].startswith("redis://redis:")
        assert int(env["CDS_WORKERS"]) >= 2 and env["CDS_HOST"] == "0.0.0.0"
        assert env["CDS_ISSUERS_FILE"] and env["CDS_PUBLIC_BASE_URL"] and env["CDS_METRICS_TOKEN_FILE"]
        unknown = set(env) - known
        assert not unknown, f"compose sets settings that do not exist: {unknown}"
        assert spec["depends_on"]["postgres"]["condition"] == "service_healthy"
        grace = int(spec["stop_grace_period"].removesuffix("s"))
        assert grace > float(env["CDS_SHUTDOWN_TIMEOUT_SECONDS"]), name
    assert services["postgres"]["image"].startswith("postgres:") and "healthcheck" in services["postgres"]
    assert services["redis"]["image"].startswith("redis:") and "healthcheck" in services["redis"]
    assert services["lb"]["image"].startswith("haproxy:")
    assert "./haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro" in services["lb"]["volumes"]


def test_compose_gives_secrets_as_files_never_as_environment_variables():
    declared = COMPOSE["secrets"]
    for name, secret in declared.items():
        assert set(secret) == {"file"} and secret["file"].startswith("./secrets/"), name
    # A database or Redis URL is a secret only when it carries a password.
    urls = {"CDS_DATABASE_URL", "CDS_REDIS_URL"}
    secret_settings = {name.removesuffix("_FILE") for name in secret_file_env_names()} - urls
    for name, spec in COMPOSE["services"].items():
        env = spec.get("environment", {})
        assert not secret_settings & set(env), f"{name} sets a secret as an environment variable"
        for url in urls & set(env):
            assert urlsplit(env[url]).password is None and "${" not in env[url], f"{name}: {url} holds a password"
        assert not any(re.search(r"password|token|secret", key, re.I) and not key.endswith("_FILE") for key in env)
        for key, value in env.items():
            if key.endswith("_FILE") and value.startswith("/run/secrets/"):
                assert _env_file_secret(value) in spec["secrets"], f"{name}: {key} names a secret it is not given"
    for spec in _cds_services().values():
        env = spec["environment"]
        # The service and PostgreSQL read one and the same password file.
        postgres = COMPOSE["services"]["postgres"]["environment"]
        assert env["CDS_DATABASE_PASSWORD_FILE"] == postgres["POSTGRES_PASSWORD_FILE"]
    example = (REPO / "deploy" / ".env.example").read_text()
    assert not re.search(r"PASSWORD|TOKEN|SECRET", example.split("Secrets are not here")[1])


def test_the_load_balancer_checks_readiness_sends_to_every_replica_and_hides_metrics():
    for name in _cds_services():
        assert re.search(rf"^\s*server {name} {name}:8080 check", HAPROXY, re.M), name
    assert "option httpchk GET /ready" in HAPROXY and "http-check expect status 200" in HAPROXY
    assert re.search(r"http-request deny .*\{ path /metrics \}", HAPROXY)
    assert "retry-on conn-failure" in HAPROXY  # never resend a request whose token a replica has spent


def test_the_load_balancer_terminates_tls_sends_hsts_and_redirects_plain_http():
    (tls_bind,) = re.findall(r"^\s*bind (\S+) ssl crt (\S+).*$", HAPROXY, re.M)
    port, certificate = tls_bind
    assert _env_file_secret(certificate) in COMPOSE["services"]["lb"]["secrets"]
    assert f"443:{port.lstrip(':')}" in COMPOSE["services"]["lb"]["ports"]
    assert re.search(r'http-response set-header Strict-Transport-Security "max-age=\d{8,}', HAPROXY)
    assert re.search(r"^\s*http-request redirect scheme https", HAPROXY, re.M)
    assert "ssl-min-ver TLSv1.2" in HAPROXY


def test_haproxy_accepts_the_configuration(tmp_path):
    haproxy = shutil.which("haproxy")
    if haproxy is None:
        pytest.skip("haproxy is not installed (apt-get install haproxy): its own check of haproxy.cfg is skipped")
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    pem = tmp_path / "tls.pem"
    pem.write_bytes(
        certificate.public_bytes(serialization.Encoding.PEM)
        + key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    config = tmp_path / "haproxy.cfg"
    config.write_text(HAPROXY.replace("/run/secrets/tls_certificate", str(pem)))
    result = subprocess.run([haproxy, "-c", "-f", str(config)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


# --- what git keeps out -------------------------------------------------------------------------------


def test_git_ignores_the_deployment_secrets_but_keeps_their_example():
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")

    def ignored(path: str) -> bool:
        result = subprocess.run(["git", "check-ignore", "-q", "--no-index", path], cwd=REPO, timeout=30)
        return result.returncode == 0

    assert ignored("deploy/.env") and ignored("deploy/secrets/postgres_password")
    assert not ignored("deploy/.env.example")
    assert ignored(re.search(r"^SBOM = (\S+)", MAKEFILE, re.M).group(1)), "make sbom writes into the repository"


# --- locks, licence, changelog ----------------------------------------------------------------------


def test_every_dependency_is_pinned_in_the_lock_file():
    """`make` installs with `-c requirements.lock`: a dependency missing from it would be installed
    unpinned. After changing pyproject.toml, run `make lock`."""
    project = PYPROJECT["project"]
    wanted = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        wanted += extra
    pinned = _pins(REPO / "requirements.lock")
    missing = [_name(requirement) for requirement in wanted if _name(requirement) not in pinned]
    assert not missing, f"not in requirements.lock (run `make lock`): {missing}"
    assert "-c $(LOCK) -e ." in MAKEFILE and "-c $(LOCK) -e '.[test]'" in MAKEFILE


def test_the_runtime_lock_pins_the_same_versions_each_with_its_hashes():
    """The image installs requirements-runtime.lock with --require-hashes: every line pinned and
    hashed, every runtime dependency there, at the version CI tested (requirements.lock)."""
    text = RUNTIME_LOCK.read_text()
    runtime = _pins(RUNTIME_LOCK)
    missing = [_name(r) for r in PYPROJECT["project"]["dependencies"] if _name(r) not in runtime]
    assert not missing, f"not in {RUNTIME_LOCK.name} (run `make lock`): {missing}"
    tested = _pins(REPO / "requirements.lock")
    differ = {name: (version, tested.get(name)) for name, version in runtime.items() if tested.get(name) != version}
    assert not differ, f"the locks disagree (run `make lock`): {differ}"
    for entry in re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 2)[2]):
        assert "--hash=sha256:" in entry, entry.splitlines()[0]
    assert re.search(r"--generate-hashes .*\n?.*--output-file \$\(RUNTIME_LOCK\)", MAKEFILE)


def test_the_licence_is_the_apache_2_0_text_and_the_package_declares_it_as_spdx():
    assert hashlib.sha256((REPO / "LICENSE").read_bytes()).hexdigest() == APACHE_2_0_SHA256
    project = PYPROJECT["project"]
    assert project["license"] == "Apache-2.0" and project["license-files"] == ["LICENSE"]
    # PEP 639: a licence expression replaces the licence classifiers.
    assert not [c for c in project["classifiers"] if c.startswith("License ::")]
    assert "Programming Language :: Python :: 3.11" in project["classifiers"]
    (setuptools,) = [r for r in PYPROJECT["build-system"]["requires"] if r.startswith("setuptools")]
    assert int(re.search(r">=(\d+)", setuptools).group(1)) >= 77  # PEP 639 support


def test_the_changelog_keeps_a_changelog_with_an_entry_for_this_release():
    changelog = (REPO / "CHANGELOG.md").read_text(encoding="utf-8")
    assert changelog.startswith("# Changelog") and "keepachangelog.com" in changelog
    sections = re.findall(r"^## \[([^\]]+)\]", changelog, re.M)
    assert sections and sections[0] in ("Unreleased", PYPROJECT["project"]["version"])
    first = changelog.split("\n## ", 2)[1]
    assert re.search(r"^### (Added|Changed|Fixed|Security|Removed|Deprecated)$", first, re.M)

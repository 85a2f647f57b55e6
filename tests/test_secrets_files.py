"""Secrets from files: every secret setting is also read from the file ``CDS_<NAME>_FILE`` names
(the Docker and Kubernetes secrets convention), so that no secret needs to be an environment
variable. Both set, or a file that cannot be used, stops start-up with an error that names the
variable and never shows what the file holds."""

from __future__ import annotations

import os
import subprocess
import sys

import psycopg.conninfo
import pytest
from pydantic import ValidationError

from cds_service.config import (
    SECRET_FILE_MAX_BYTES,
    Settings,
    env_var_names,
    secret_file_env_names,
    secret_setting_names,
)
from cds_service.errors import describe_validation_error
from tests.conftest import REPO

# A valid value for each secret setting whose format is checked; any other gets GENERIC.
GENERIC = "a-secret-value-0123456789abcdef0123456789abcdef"
VALUES = {
    "database_url": "postgresql://cds:s3cret-pw@db.internal:5432/cds",
    "database_password": "correct horse battery staple",
    "redis_url": "redis://:s3cret-pw@redis.internal:6379/0",
    "metrics_token": "metrics-token-0123456789abcdef",
    "report_link_secret": "report-link-secret-0123456789abcdef0123456789",
}
# Set alongside a setting that needs another one to be valid.
NEEDS = {"database_password": {"CDS_DATABASE_URL": "postgresql://cds@db.internal:5432/cds"}}


@pytest.fixture(autouse=True)
def _no_secrets_in_the_environment(monkeypatch):
    for name in list(os.environ):
        if name.upper().startswith("CDS_") and (name.upper().endswith("_FILE") or name.upper() in _secret_vars()):
            monkeypatch.delenv(name)


def _secret_vars() -> set[str]:
    return {name.removesuffix("_FILE") for name in secret_file_env_names()}


def _refusal(**kwargs) -> str:
    with pytest.raises(ValidationError) as caught:
        Settings(**kwargs)
    return describe_validation_error(caught.value) + "\n" + str(caught.value)


def test_the_secret_settings_include_the_known_ones_and_no_file_variable_is_itself_a_setting():
    assert set(VALUES) <= set(secret_setting_names())
    assert not set(secret_file_env_names()) & set(env_var_names())


def test_settings_named_like_secrets_are_secrets():
    """A new *_secret, *_token or *_password setting is read from a file without being listed."""
    for name in Settings.model_fields:
        if name.endswith(("_secret", "_token", "_password")):
            assert name in secret_setting_names(), name
    assert "redis_key_prefix" not in secret_setting_names()


@pytest.mark.parametrize("name", secret_setting_names())
def test_a_secret_is_read_from_the_file_its_file_variable_names_without_the_trailing_newline(
    name, tmp_path, monkeypatch
):
    path = tmp_path / name
    expected = VALUES.get(name, GENERIC)
    path.write_text(expected + "\n")
    for variable, value in NEEDS.get(name, {}).items():
        monkeypatch.setenv(variable, value)
    monkeypatch.setenv(f"CDS_{name.upper()}_FILE", str(path))
    value = getattr(Settings(), name)
    if hasattr(value, "get_secret_value"):
        value = value.get_secret_value()
    assert value == expected


def test_a_windows_line_ending_and_several_newlines_are_stripped_but_spaces_are_kept(tmp_path, monkeypatch):
    path = tmp_path / "token"
    path.write_bytes(b" metrics-token-0123456789abcdef \r\n\r\n")
    monkeypatch.setenv("CDS_METRICS_TOKEN_FILE", str(path))
    assert Settings().metrics_token == " metrics-token-0123456789abcdef "


def test_the_database_password_goes_into_a_url_that_has_none_and_psycopg_reads_it_back(tmp_path, monkeypatch):
    password = "p@ss:w/rd %41#?"  # every character a URL would misread
    (tmp_path / "pw").write_text(password + "\n")
    monkeypatch.setenv("CDS_DATABASE_URL", "postgresql://cds@db.internal:5432/cds?sslmode=require")
    monkeypatch.setenv("CDS_DATABASE_PASSWORD_FILE", str(tmp_path / "pw"))
    url = Settings().database_url
    parts = psycopg.conninfo.conninfo_to_dict(url)
    assert parts["password"] == password
    assert (parts["user"], parts["host"], parts["port"], parts["dbname"]) == ("cds", "db.internal", "5432", "cds")
    assert parts["sslmode"] == "require"
    # Without a user name in the URL, libpq's default user is kept.
    monkeypatch.setenv("CDS_DATABASE_URL", "postgresql://db.internal/cds")
    parts = psycopg.conninfo.conninfo_to_dict(Settings().database_url)
    assert parts["password"] == password and "user" not in parts


def test_a_database_password_is_refused_beside_a_url_with_a_password_or_without_a_url(tmp_path, monkeypatch):
    (tmp_path / "pw").write_text("hunter2-the-password\n")
    monkeypatch.setenv("CDS_DATABASE_PASSWORD_FILE", str(tmp_path / "pw"))
    monkeypatch.setenv("CDS_DATABASE_URL", "postgresql://cds:other@db.internal/cds")
    message = _refusal()
    assert "database_password" in message and "given twice" in message
    monkeypatch.delenv("CDS_DATABASE_URL")
    message = _refusal()
    assert "CDS_DATABASE_URL is not" in message
    assert "hunter2" not in message


def test_a_secret_and_its_file_both_set_is_refused_naming_both_variables(tmp_path, monkeypatch):
    (tmp_path / "token").write_text("metrics-token-from-the-file-0123\n")
    monkeypatch.setenv("CDS_METRICS_TOKEN", "metrics-token-from-the-environment")
    monkeypatch.setenv("CDS_METRICS_TOKEN_FILE", str(tmp_path / "token"))
    message = _refusal()
    assert "both CDS_METRICS_TOKEN and CDS_METRICS_TOKEN_FILE are set" in message
    assert "from-the-file" not in message and "from-the-environment" not in message


def test_an_empty_variable_beside_its_file_is_not_a_conflict(tmp_path, monkeypatch):
    """Compose and Kubernetes often pass a variable that is set but empty."""
    (tmp_path / "token").write_text("metrics-token-0123456789abcdef\n")
    monkeypatch.setenv("CDS_METRICS_TOKEN", "")
    monkeypatch.setenv("CDS_METRICS_TOKEN_FILE", str(tmp_path / "token"))
    assert Settings().metrics_token == "metrics-token-0123456789abcdef"


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (lambda tmp: tmp / "missing", "cannot read"),
        (lambda tmp: tmp, "cannot read"),  # a directory
        (lambda tmp: _write(tmp / "empty", b"\n"), "is empty"),
        (lambda tmp: _write(tmp / "binary", b"\xff\xfehunter2\n"), "is not UTF-8 text"),
        (lambda tmp: _write(tmp / "huge", b"hunter2" * (SECRET_FILE_MAX_BYTES // 7 + 1)), "larger than"),
    ],
    ids=["missing", "directory", "empty", "not-text", "too-large"],
)
def test_a_secret_file_that_cannot_be_used_is_refused_naming_the_variable_never_the_content(
    make, says, tmp_path, monkeypatch
):
    path = make(tmp_path)
    monkeypatch.setenv("CDS_REDIS_URL_FILE", str(path))
    message = _refusal()
    assert f"redis_url: CDS_REDIS_URL_FILE: {path}" in message or f"CDS_REDIS_URL_FILE: cannot read {path}" in message
    assert says in message
    assert "hunter2" not in message


def _write(path, data: bytes):
    path.write_bytes(data)
    return path


def test_an_invalid_value_in_a_file_is_refused_without_showing_it(tmp_path, monkeypatch):
    (tmp_path / "url").write_text("mysql://cds:hunter2@db.internal/cds\n")
    monkeypatch.setenv("CDS_DATABASE_URL_FILE", str(tmp_path / "url"))
    message = _refusal()
    assert "database_url" in message and "PostgreSQL URL" in message
    assert "hunter2" not in message


def test_a_keyword_argument_wins_over_a_secret_file(tmp_path, monkeypatch):
    """What `serve`'s and `feedback-import`'s flags rely on: a flag wins over the environment."""
    monkeypatch.setenv("CDS_DATABASE_URL_FILE", str(tmp_path / "missing"))
    url = "postgresql://cds@db.internal/cds"
    assert Settings(database_url=url).database_url == url


def test_the_command_line_refuses_to_start_with_one_line_naming_the_variable(tmp_path):
    (tmp_path / "token").write_text("metrics-token-hunter2-0123456789\n")
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("CDS_")}
    env |= {"CDS_METRICS_TOKEN_FILE": str(tmp_path / "token"), "CDS_METRICS_TOKEN": "metrics-token-also-set-01234"}
    result = subprocess.run(
        [sys.executable, "-m", "cds_service", "serve", "--port", "0"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "invalid configuration" in result.stderr
    assert "CDS_METRICS_TOKEN and CDS_METRICS_TOKEN_FILE" in result.stderr
    assert "hunter2" not in result.stderr + result.stdout and "also-set" not in result.stderr

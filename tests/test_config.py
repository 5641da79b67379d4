"""Settings: defaults, parsing, and the production refusals."""

from pathlib import Path

import pytest

from backend.config import ConfigError, Settings, load_settings

pytestmark = pytest.mark.usefixtures("clean_env")

STRONG = "s" * 32


def test_defaults_are_development_on_sqlite() -> None:
    settings = Settings(_env_file=None, better_auth_secret=STRONG)
    assert settings.environment == "development"
    assert settings.database_url is None
    assert settings.allowed_origins == ["http://localhost:3000"]
    assert settings.jwks_url == "http://localhost:3000/api/auth/jwks"
    assert settings.jwt_leeway_seconds == 30
    assert settings.max_body_bytes == 64 * 1024


def test_environment_variables_and_aliases(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEON_DATABASE_URL", "postgresql://u:p@h/db")
    monkeypatch.setenv("BETTER_AUTH_URL", "https://app.example/")
    monkeypatch.setenv("CORS_ORIGINS", "https://a.example, https://b.example/")
    settings = Settings(_env_file=None)
    assert settings.database_url is not None
    assert settings.database_url.get_secret_value() == "postgresql://u:p@h/db"
    assert settings.better_auth_url == "https://app.example"
    assert settings.allowed_origins == ["https://a.example", "https://b.example"]
    monkeypatch.delenv("NEON_DATABASE_URL")
    monkeypatch.setenv("DATABASE_URL", "postgres://x@y/z")
    assert Settings(_env_file=None).database_url is not None


def test_env_file_is_read(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("BETTER_AUTH_SECRET=from-file-secret-0123456789abcdef\nLOG_LEVEL=DEBUG\n")
    settings = Settings(_env_file=env)
    assert settings.secret == "from-file-secret-0123456789abcdef"
    assert settings.log_level == "DEBUG"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        pytest.param({"better_auth_secret": STRONG}, "NEON_DATABASE_URL", id="no-database"),
        pytest.param({"database_url": "postgresql://h/db"}, "BETTER_AUTH_SECRET", id="no-secret"),
        pytest.param(
            {"database_url": "postgresql://h/db", "better_auth_secret": "short"}, "32 characters", id="weak-secret"
        ),
        pytest.param(
            {"database_url": "postgresql://h/db", "better_auth_secret": STRONG, "cors_origins": "*"},
            "CORS_ORIGINS",
            id="wildcard-cors",
        ),
    ],
)
def test_production_refuses_unsafe_config(overrides: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(_env_file=None, environment="production", **overrides)
    assert message in str(caught.value)
    assert "short" not in str(caught.value).replace("shorter", "")


def test_production_with_safe_config_loads() -> None:
    settings = load_settings(
        _env_file=None, environment="production", database_url="postgresql://h/db", better_auth_secret=STRONG
    )
    assert settings.secret == STRONG


def test_development_without_secret_generates_and_keeps_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    first = Settings(_env_file=None, data_dir=tmp_path / "data").secret
    second = Settings(_env_file=None, data_dir=tmp_path / "data").secret
    assert first == second
    assert len(first) >= 32
    assert "generated development secret" in caplog.text
    assert first not in caplog.text
    assert (tmp_path / "data" / "dev-secret").stat().st_mode & 0o777 == 0o600


def test_invalid_values_are_reported_without_echoing_them() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(_env_file=None, environment="staging", jwt_leeway_seconds="-5")
    assert "environment" in str(caught.value)
    assert "staging" not in str(caught.value)


def test_configuration_values_are_case_insensitive_where_unambiguous(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOG_LEVEL", "warning")
    monkeypatch.setenv("ENVIRONMENT", "Production")
    monkeypatch.setenv("DB_PREPARED_STATEMENTS", "Auto")
    monkeypatch.setenv("NEON_DATABASE_URL", "postgresql://u:p@h/db")
    settings = load_settings(_env_file=None, better_auth_secret=STRONG)
    assert (settings.log_level, settings.environment, settings.db_prepared_statements) == (
        "WARNING",
        "production",
        "auto",
    )


def test_the_database_url_is_parsed_once_at_load(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgres://u:p%40ss@db.example:6543/tasks?sslmode=require")
    database = load_settings(_env_file=None).database
    assert (database.host, database.port, database.password, database.database) == ("db.example", 6543, "p@ss", "tasks")
    assert database.display == 'database "tasks" on db.example:6543'

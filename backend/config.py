"""Settings: one place that reads the environment and refuses unsafe production configs."""

import logging
import os
import secrets
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from backend.database_url import DatabaseURL, database_url_variable, parse_database_url, parse_sqlite

log = logging.getLogger("backend.config")

BACKEND_DIR = Path(__file__).resolve().parent
PROJECT_DIR = BACKEND_DIR.parent
# Generated files (the SQLite database, the dev secret) live in `.data/` under the working directory,
# or in TODO_DATA_DIR: never next to the code, which in a wheel install is site-packages.
DATA_DIR = Path(".data")
# Read in this order, later files winning; the environment wins over both.
ENV_FILES = (BACKEND_DIR / ".env", Path(".env"))
MIN_SECRET_LENGTH = 32


class ConfigError(Exception):
    """The configuration cannot run safely; the message names the setting, never its value."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=ENV_FILES,
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
    )

    environment: Literal["development", "production"] = "development"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # `json`: one JSON object per line (Loki, CloudWatch, Datadog, GCP); `text`: the same fields, readable.
    log_format: Literal["text", "json"] = "text"
    # Prometheus metrics at /metrics; off by default (nothing is counted when off).
    metrics_enabled: bool = False

    better_auth_secret: SecretStr | None = None
    better_auth_url: str = "http://localhost:3000"
    # Override where the JWKS lives; default {BETTER_AUTH_URL}/api/auth/jwks.
    better_auth_jwks_url: str | None = None
    # Optional iss/aud checks for HS256 tokens (JWKS tokens always check both against BETTER_AUTH_URL).
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_leeway_seconds: int = Field(default=30, ge=0, le=300)
    # Optional: refuse tokens whose exp - iat is longer (unset: any lifetime).
    jwt_max_lifetime_seconds: int | None = Field(default=None, ge=1)
    jwks_cache_seconds: int = Field(default=300, ge=1)
    jwks_refetch_cooldown_seconds: float = Field(default=30.0, ge=0)
    jwks_fetch_timeout_seconds: float = Field(default=3.0, gt=0)

    database_url: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("NEON_DATABASE_URL", "DATABASE_URL")
    )
    db_pool_size: int = Field(default=10, ge=1)
    db_max_overflow: int = Field(default=10, ge=0)
    db_pool_timeout_seconds: float = Field(default=10.0, gt=0)
    db_pool_recycle_seconds: int = Field(default=240, ge=1)
    db_connect_timeout_seconds: float = Field(default=15.0, gt=0)
    db_command_timeout_seconds: float = Field(default=15.0, gt=0)
    db_startup_timeout_seconds: float = Field(default=30.0, ge=0)
    # Prepared statements (one round trip per request): "auto" prepares under process-unique names
    # and falls back to unnamed statements the first time a pooler loses one; "on"/"off" pin it.
    db_prepared_statements: Literal["auto", "on", "off"] = "auto"

    data_dir: Path = Field(default=DATA_DIR, validation_alias=AliasChoices("TODO_DATA_DIR", "data_dir"))
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    docs_enabled: bool = True
    max_body_bytes: int = Field(default=64 * 1024, ge=1)

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip().rstrip("/") for origin in value.split(",") if origin.strip()]
        return value

    @field_validator("environment", "db_prepared_statements", "log_format", mode="before")
    @classmethod
    def _lower_case(cls, value: object) -> object:
        """Choices are case-insensitive: `ENVIRONMENT=Production` means production."""
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("database_url", mode="before")
    @classmethod
    def _blank_url_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("database_url")
    @classmethod
    def _valid_url(cls, value: SecretStr | None) -> SecretStr | None:
        """Malformed URLs fail here, at load, with a reason that repeats nothing from the URL."""
        if value is not None:
            parse_database_url(value.get_secret_value())
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        """`LOG_LEVEL=debug` means DEBUG."""
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("data_dir")
    @classmethod
    def _absolute_data_dir(cls, value: Path) -> Path:
        """Resolved once, against the working directory the process started in."""
        return value.expanduser().resolve()

    @field_validator("better_auth_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @model_validator(mode="after")
    def _check_production(self) -> "Settings":
        if self.environment != "production":
            return self
        problems = []
        if self.database_url is None:
            problems.append("NEON_DATABASE_URL (or DATABASE_URL) must be set in production")
        secret = self.better_auth_secret
        if secret is None or len(secret.get_secret_value()) < MIN_SECRET_LENGTH:
            problems.append(f"BETTER_AUTH_SECRET must be at least {MIN_SECRET_LENGTH} characters in production")
        if "*" in self.allowed_origins:
            problems.append("CORS_ORIGINS may not be '*' in production (credentials are allowed)")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def allowed_origins(self) -> list[str]:
        return self.cors_origins or [self.better_auth_url]

    @cached_property
    def database(self) -> DatabaseURL:
        """The parsed database URL; the embedded SQLite file when none is configured."""
        if self.database_url is None:
            return parse_sqlite(f"sqlite:///{self.data_dir / 'todo.sqlite3'}")
        return parse_database_url(self.database_url.get_secret_value())

    @property
    def database_setting(self) -> str:
        """What to name in a line about the database: the variable the URL came from, or the default."""
        return database_url_variable() if self.database_url is not None else "the embedded SQLite database"

    @property
    def jwks_url(self) -> str:
        return self.better_auth_jwks_url or f"{self.better_auth_url}/api/auth/jwks"

    @cached_property
    def secret(self) -> str:
        """The HS256 secret; in development a generated one is kept in the data dir so the CLI and server agree."""
        if self.better_auth_secret is not None:
            return self.better_auth_secret.get_secret_value()
        path = self.data_dir / "dev-secret"
        secret = read_or_create_secret(path)
        log.warning(
            "BETTER_AUTH_SECRET is not set: using a generated development secret stored in %s",
            path,
        )
        return secret


def read_or_create_secret(path: Path) -> str:
    """The secret in `path`, created on first use: mode 0600 from birth, published whole, once.

    Written to a private temp file (O_CREAT|O_EXCL, 0o600: never world-readable, whatever the umask)
    and hard-linked into place, which fails if the file exists: of two workers starting together one
    creates it and the other reads that same secret; nobody can read a half-written file.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not path.exists():
        temp = path.with_name(f".{path.name}-{secrets.token_hex(8)}")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_urlsafe(48))
                out.flush()
                os.fsync(out.fileno())
            os.link(temp, path)
        except FileExistsError:
            pass  # another worker published first: use theirs
        finally:
            temp.unlink(missing_ok=True)
    return path.read_text().strip()


def load_settings(**overrides: object) -> Settings:
    """Build settings, turning validation errors into a ConfigError without echoing any value."""
    from pydantic import ValidationError

    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        reasons = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'settings'}: {_reason(error['msg'])}"
            for error in exc.errors(include_input=False, include_url=False)
        )
        raise ConfigError(f"Invalid configuration: {reasons}") from None


def _reason(message: str) -> str:
    return message.removeprefix("Value error, ")

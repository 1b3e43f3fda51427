"""convbot's settings: one typed class read from the environment (and a `.env` file), checked
at start with a clear message for each bad value."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every setting is `CONVBOT_<NAME>`; a variable in the environment wins over `.env`."""

    model_config = SettingsConfigDict(env_prefix="CONVBOT_", env_file=".env", extra="ignore")

    data_dir: Path = Path("./data")
    database_url: str = ""  # empty: SQLite at data_dir/convbot.db
    workers: int = Field(default=1, ge=1, le=64)
    job_timeout_seconds: float = Field(default=600.0, gt=0)
    job_memory_mb: int = Field(default=8192, ge=256)  # a worker above this is killed and its job failed
    retention_hours: float = Field(default=168.0, gt=0)
    cleanup_interval_minutes: float = Field(default=60.0, gt=0)
    max_disk_mb: float = Field(default=10240.0, gt=0)
    max_calibration_mb: float = Field(default=50.0, gt=0)  # an int8 calibration file (samples or images)
    storage_url: str = ""  # empty: uploads and artifacts under data_dir; or s3://bucket/prefix (jobs/storage.py)
    s3_endpoint_url: str = ""  # empty: AWS S3; else SeaweedFS, MinIO, Ceph... (http(s)://host:port)
    broker_url: str = ""  # empty: jobs run in the local pool; redis://...: on `convbot worker` machines

    @field_validator("broker_url")
    @classmethod
    def _redis_broker(cls, value: str) -> str:
        # Celery over Redis only: the lost-worker watch and the event lists live in the same Redis.
        if value and not value.startswith(("redis://", "rediss://")):
            raise ValueError("the broker must be a Redis URL, like redis://:password@host:6379/0")
        return value

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @field_validator("database_url")
    @classmethod
    def _psycopg_driver(cls, value: str) -> str:
        # To SQLAlchemy a bare postgresql:// means psycopg2; convbot ships psycopg 3.
        for prefix in ("postgresql://", "postgres://"):
            if value.startswith(prefix):
                return "postgresql+psycopg://" + value.removeprefix(prefix)
        return value

    @field_validator("storage_url")
    @classmethod
    def _s3_url(cls, value: str) -> str:
        if not value:
            return value
        bucket, prefix = parse_storage_url(value)
        return f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"

    @field_validator("s3_endpoint_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if value and (parts.scheme not in ("http", "https") or not parts.hostname):
            raise ValueError("expected empty (AWS S3) or an http(s)://host:port URL")
        return value.rstrip("/")

    @property
    def sqlalchemy_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'convbot.db'}"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def artifacts_dir(self) -> Path:
        return self.data_dir / "artifacts"

    @property
    def tmp_dir(self) -> Path:
        return self.data_dir / "tmp"


# S3's bucket naming rules: 3 to 63 lowercase letters, digits, dots and hyphens, a letter or digit at each end.
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


def parse_storage_url(url: str) -> tuple[str, str]:
    """`s3://bucket/some/prefix` -> ("bucket", "some/prefix"); ValueError saying what is wrong otherwise."""
    if not url.startswith("s3://"):
        raise ValueError("expected empty (the data dir) or s3://bucket/prefix")
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    if not _BUCKET.fullmatch(bucket) or ".." in bucket:
        raise ValueError(f"{bucket!r} is not a valid S3 bucket name (3-63 of a-z, 0-9, '.', '-')")
    parts = [part for part in prefix.split("/") if part]
    if any(part in (".", "..") for part in parts):
        raise ValueError("the prefix may not contain '.' or '..'")
    return bucket, "/".join(parts)


class SettingsError(ValueError):
    """Settings that cannot be used; the message names each bad variable."""


SettingsT = TypeVar("SettingsT", bound=Settings)


def load_settings(**overrides: object) -> Settings:
    """Read the settings, or raise SettingsError listing every bad value by its variable name."""
    return load_settings_as(Settings, **overrides)


def load_settings_as(settings_class: type[SettingsT], **overrides: object) -> SettingsT:
    """`load_settings` for a class that extends Settings (the bot's)."""
    try:
        return settings_class(**overrides)  # type: ignore[arg-type]
    except ValidationError as error:
        problems = []
        for item in error.errors():
            name = "CONVBOT_" + "_".join(str(part) for part in item["loc"]).upper()
            problems.append(f"{name}: {item['msg']} (got {item.get('input')!r})")
        raise SettingsError("bad settings: " + "; ".join(problems)) from None

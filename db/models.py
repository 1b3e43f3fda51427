"""The job records: users, uploaded models, conversion jobs and their artifacts."""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Annotated, Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, MetaData, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# Constraint names Alembic can find again on both SQLite and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """Now, in UTC, without tzinfo: SQLite keeps no time zones, so every time is stored as naive UTC."""
    return datetime.now(UTC).replace(tzinfo=None)


intpk = Annotated[int, mapped_column(primary_key=True)]
created = Annotated[datetime, mapped_column(default=utcnow)]
JsonDict = Annotated[dict[str, Any], mapped_column(JSON, default=dict)]
JsonList = Annotated[list[Any], mapped_column(JSON, default=list)]


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class JobStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    PARTIAL = "partial"  # finished; some targets' files failed to run and were not delivered, the others were
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"  # running when the process died; queued again once

    @property
    def finished(self) -> bool:
        return self in (JobStatus.SUCCEEDED, JobStatus.PARTIAL, JobStatus.FAILED, JobStatus.CANCELLED)


class User(Base):
    __tablename__ = "users"

    id: Mapped[intpk]
    telegram_id: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    language: Mapped[str] = mapped_column(String(16), default="")
    first_seen: Mapped[created]
    last_seen: Mapped[datetime] = mapped_column(default=utcnow)
    blocked: Mapped[bool] = mapped_column(default=False)

    def __repr__(self) -> str:
        return f"User(id={self.id}, telegram_id={self.telegram_id}, name={self.name!r})"


class UploadedModel(Base):
    __tablename__ = "uploaded_models"

    id: Mapped[intpk]
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    format: Mapped[str] = mapped_column(String(32))
    original_name: Mapped[str] = mapped_column(String(255))
    storage_path: Mapped[str] = mapped_column(String(1024))
    summary: Mapped[JsonDict]  # the inspection, so /nodes never re-reads the file
    created_at: Mapped[created]
    expires_at: Mapped[datetime | None]
    deleted_at: Mapped[datetime | None]

    user: Mapped[User] = relationship()

    def __repr__(self) -> str:
        return f"UploadedModel(id={self.id}, name={self.original_name!r}, sha256={self.sha256[:12]})"


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_status_created_at", "status", "created_at"),)

    id: Mapped[intpk]
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("uploaded_models.id"), index=True)
    targets: Mapped[JsonList]
    inputs: Mapped[JsonList]
    outputs: Mapped[JsonList]
    shapes: Mapped[JsonDict]
    tflite_quantization: Mapped[str] = mapped_column(String(16), default="none")
    tfjs_quantization: Mapped[str] = mapped_column(String(16), default="none")
    # int8: the user's samples (a storage key under calibration/) and how image pixels map to the input.
    calibration_key: Mapped[str | None] = mapped_column(String(1024))
    input_range: Mapped[str | None] = mapped_column(String(8))
    cache_key: Mapped[str] = mapped_column(String(64), index=True)  # model sha256 + options
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.QUEUED.value)
    stage: Mapped[str] = mapped_column(String(32), default="queued")
    interruptions: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[created]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    timings: Mapped[JsonDict]
    tool_versions: Mapped[JsonDict]
    result: Mapped[JsonDict]  # the ConversionResult, validation included
    error_message: Mapped[str] = mapped_column(Text, default="")
    error_log: Mapped[str] = mapped_column(Text, default="")
    cached_from_job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id"))

    user: Mapped[User] = relationship()
    model: Mapped[UploadedModel] = relationship()
    artifacts: Mapped[list[Artifact]] = relationship(back_populates="job", order_by="Artifact.id")

    def __repr__(self) -> str:
        return f"Job(id={self.id}, user_id={self.user_id}, status={self.status})"


class Artifact(Base):
    __tablename__ = "artifacts"

    id: Mapped[intpk]
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # tflite, tfjs, tfjs-layers
    quantization: Mapped[str] = mapped_column(String(16), default="none")
    file_name: Mapped[str] = mapped_column(String(255))
    path: Mapped[str] = mapped_column(String(1024))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[created]
    expires_at: Mapped[datetime | None]
    deleted_at: Mapped[datetime | None]
    telegram_file_id: Mapped[str | None] = mapped_column(String(255))  # to re-send without uploading

    job: Mapped[Job] = relationship(back_populates="artifacts")

    def __repr__(self) -> str:
        return f"Artifact(id={self.id}, job_id={self.job_id}, kind={self.kind}, deleted={self.deleted_at is not None})"

"""What the edges (the bot, the console) read and record about users, uploads and jobs. Every
answer is a read-only view: no database session or row leaves the jobs layer, so nothing outside it
can disagree with the job service about what a job is."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from db.models import Artifact, Job, JobStatus, UploadedModel, User, utcnow
from jobs import records
from jobs.cleanup import run_cleanup
from jobs.settings import Settings
from jobs.storage import Storage, stored_key

UNFINISHED = (JobStatus.RUNNING.value, JobStatus.QUEUED.value, JobStatus.INTERRUPTED.value)
DELIVERED = (JobStatus.SUCCEEDED.value, JobStatus.PARTIAL.value)
EXPIRED = "expired"  # a delivered job whose files the cleanup has removed


@dataclass(frozen=True)
class UserView:
    id: int
    telegram_id: int | None  # None: the local CLI user
    language: str


@dataclass(frozen=True)
class ModelView:
    """An upload that is still kept, with its inspection summary."""

    id: int
    name: str
    summary: dict[str, Any]


@dataclass(frozen=True)
class JobLine:
    """One job as `/jobs` lists it."""

    job_id: int
    model: str
    targets: tuple[str, ...]
    status: str  # a JobStatus value, or EXPIRED
    created_at: datetime

    @property
    def delivered(self) -> bool:
        return self.status in DELIVERED

    def age_seconds(self) -> float:
        return (utcnow() - self.created_at).total_seconds()


@dataclass(frozen=True)
class StoredFile:
    """A kept artifact of a job; `telegram_file_id` once Telegram has it (sent again by id)."""

    artifact_id: int
    kind: str
    quantization: str
    path: str
    telegram_file_id: str | None

    @property
    def is_chart(self) -> bool:
        """quant=auto|compare's size-against-error picture, not a converted model."""
        return self.kind == records.CHART_KIND


@dataclass(frozen=True)
class JobFiles:
    files: tuple[StoredFile, ...]
    result: dict[str, Any]  # ConversionResult.to_dict(), with each file's check under "validation"


@dataclass(frozen=True)
class Counts:
    users: int
    jobs_by_status: dict[str, int]


class Catalog:
    """Users, uploads and jobs as the edges see them."""

    def __init__(self, settings: Settings, session_factory: sessionmaker[Session], storage: Storage) -> None:
        self.settings = settings
        self.sessions = session_factory
        self.storage = storage

    # -- users and uploads

    def record_user(self, telegram_id: int | None, name: str = "", language: str = "") -> UserView:
        """The user with this Telegram id, created on first sight; name and language kept current."""
        with self.sessions() as session:
            user = records.ensure_user(session, telegram_id, name, language)
            session.commit()
            return _user_view(user)

    def user(self, user_id: int) -> UserView | None:
        with self.sessions() as session:
            user = session.get(User, user_id)
            return None if user is None else _user_view(user)

    def store_upload(self, user_id: int, path: Path, name: str, summary: dict[str, Any]) -> ModelView:
        """Keep an inspected upload (once per content) until the retention time has passed."""
        with self.sessions() as session:
            user = session.get(User, user_id)
            assert user is not None, f"user {user_id} is not recorded"
            model = records.store_upload(session, self.storage, user, path, name, summary, summary["format"])
            model.expires_at = model.created_at + timedelta(hours=self.settings.retention_hours)
            session.commit()
            return _model_view(model)

    def store_samples(self, path: Path, name: str) -> str:
        """Keep an int8 job's calibration samples where its worker can read them; their storage key. They stay
        only while a job on them is unfinished (jobs/cleanup.py), so never longer than the model."""
        return self.storage.put_calibration(path, name)

    def model(self, model_id: int) -> ModelView | None:
        with self.sessions() as session:
            model = session.get(UploadedModel, model_id)
            return None if model is None else _model_view(model)

    def current_model(self, user_id: int) -> ModelView | None:
        """The user's latest upload that is still kept: the chat's current model."""
        with self.sessions() as session:
            model = session.scalar(
                select(UploadedModel)
                .where(UploadedModel.user_id == user_id, UploadedModel.deleted_at.is_(None))
                .order_by(UploadedModel.id.desc())
            )
            return None if model is None else _model_view(model)

    # -- jobs

    def recent_jobs(self, user_id: int, limit: int = 10) -> list[JobLine]:
        with self.sessions() as session:
            jobs = session.scalars(select(Job).where(Job.user_id == user_id).order_by(Job.id.desc()).limit(limit))
            return [_job_line(job) for job in jobs]

    def user_job(self, user_id: int, job_id: int) -> JobLine | None:
        """One of the user's jobs; another user's job is None, as if it did not exist."""
        with self.sessions() as session:
            job = session.get(Job, job_id)
            return None if job is None or job.user_id != user_id else _job_line(job)

    def latest_unfinished_job(self, user_id: int) -> int | None:
        """What `/cancel` stops: the user's newest job that has not finished, queued or running.
        Newest first because it is the one the user just asked for; each job's status message has
        its own Cancel button for the others."""
        with self.sessions() as session:
            return session.scalar(
                select(Job.id).where(Job.user_id == user_id, Job.status.in_(UNFINISHED)).order_by(Job.id.desc())
            )

    def jobs_in_last_day(self, user_id: int) -> tuple[int, datetime]:
        """How many jobs the user started in the last 24 hours, and when the oldest of them leaves the window."""
        since = utcnow() - timedelta(days=1)
        recent = (Job.user_id == user_id, Job.created_at >= since)
        with self.sessions() as session:
            count = session.scalar(select(func.count()).select_from(Job).where(*recent))
            oldest = session.scalar(select(func.min(Job.created_at)).where(*recent))
        return int(count or 0), (oldest or utcnow()) + timedelta(days=1)

    def job_files(self, job_id: int) -> JobFiles | None:
        """The job's kept files and its result."""
        with self.sessions() as session:
            job = session.get(Job, job_id)
            if job is None:
                return None
            files = tuple(
                StoredFile(a.id, a.kind, a.quantization, a.path, a.telegram_file_id)
                for a in job.artifacts
                if a.deleted_at is None
            )
            return JobFiles(files, dict(job.result))

    def local_file(self, recorded: str, scratch: Path) -> Path:
        """A job's file to send, on this disk: in place in the data folder, else fetched into `scratch`
        (which the caller removes)."""
        return self.storage.local_path(stored_key(recorded, self.settings.data_dir), scratch)

    def remember_file_id(self, artifact_id: int, file_id: str) -> None:
        """Telegram keeps sent files: they can be sent again by id, without uploading."""
        with self.sessions() as session:
            artifact = session.get(Artifact, artifact_id)
            if artifact is not None:
                artifact.telegram_file_id = file_id
                session.commit()

    # -- for admins

    def counts(self) -> Counts:
        with self.sessions() as session:
            users = session.scalar(select(func.count()).select_from(User)) or 0
            rows = session.execute(select(Job.status, func.count()).group_by(Job.status)).all()
            return Counts(int(users), {status: int(count) for status, count in rows})

    def stored_bytes(self) -> int:
        """The size of every upload and artifact in the storage."""
        return sum(stored.size for stored in self.storage.list_files())

    def clean_up_now(self) -> str:
        """Run the cleanup policy now; what it removed, in one line."""
        with self.sessions() as session:
            report = run_cleanup(session, self.settings)
            session.commit()
            return report.summary()


def _user_view(user: User) -> UserView:
    return UserView(user.id, user.telegram_id, user.language)


def _model_view(model: UploadedModel) -> ModelView:
    return ModelView(model.id, model.original_name, dict(model.summary))


def _job_line(job: Job) -> JobLine:
    status = job.status
    if status in DELIVERED and job.artifacts and all(a.deleted_at for a in job.artifacts):
        status = EXPIRED
    return JobLine(job.id, job.model.original_name, tuple(job.targets), status, job.created_at)

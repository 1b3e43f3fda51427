"""Reading and writing job records: users, uploads, jobs, artifacts. Each function takes the
session and leaves committing to its caller."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from converter.formats import Quantization, Target
from converter.options import QUANT_SEARCHES, ConversionOptions
from converter.result import ERROR, ConversionResult
from db.models import Artifact, Job, JobStatus, UploadedModel, User, utcnow
from jobs.storage import Storage

WAITING = (JobStatus.QUEUED.value, JobStatus.INTERRUPTED.value)
CHART_KIND = "chart"  # the artifact record of a quant=auto|compare job's size-against-error PNG


def ensure_user(session: Session, telegram_id: int | None, name: str = "", language: str = "") -> User:
    """The user with this Telegram id (None: the local CLI user), created on first sight."""
    user = session.scalar(
        select(User).where(User.telegram_id.is_(None) if telegram_id is None else User.telegram_id == telegram_id)
    )
    if user is None:
        user = User(telegram_id=telegram_id, name=name, language=language)
        session.add(user)
        session.flush()
    else:
        user.last_seen = utcnow()
        user.name = name or user.name
        user.language = language or user.language
    return user


def store_upload(
    session: Session,
    storage: Storage,
    user: User,
    source: Path,
    original_name: str,
    summary: dict[str, Any],
    model_format: str,
) -> UploadedModel:
    """Keep an uploaded model in the storage, once per content, and record it under its key."""
    key = storage.put_upload(source, original_name)
    record = UploadedModel(
        user_id=user.id,
        sha256=key.split("/")[2],  # models/<sha[:2]>/<sha>/<name>
        size=source.stat().st_size,
        format=model_format,
        original_name=original_name,
        storage_path=key,
        summary=summary,
    )
    session.add(record)
    session.flush()
    return record


def options_to_record(options: ConversionOptions) -> dict[str, Any]:
    """The job columns that describe what was asked; quant=auto|compare is what was asked of both quantizations
    (each variant's own quantization is in the job's result)."""
    return {
        "targets": [t.value for t in options.targets],
        "inputs": list(options.inputs),
        "outputs": list(options.outputs),
        "shapes": {name: list(dims) for name, dims in options.shapes},
        "tflite_quantization": options.quant_search or options.tflite_quantization.value,
        "tfjs_quantization": options.quant_search or options.tfjs_quantization.value,
        "calibration_key": options.calibration,  # a storage key: the bot stores the samples before it submits
        "input_range": options.input_range,
    }


def options_from_job(job: Job) -> ConversionOptions:
    searched = job.tflite_quantization in QUANT_SEARCHES
    return ConversionOptions(
        targets=tuple(Target(t) for t in job.targets),
        inputs=tuple(job.inputs),
        outputs=tuple(job.outputs),
        shapes=tuple((name, tuple(dims)) for name, dims in job.shapes.items()),
        tflite_quantization=Quantization("none" if searched else job.tflite_quantization),
        tfjs_quantization=Quantization("none" if searched else job.tfjs_quantization),
        quant_search=job.tflite_quantization if searched else "",
        calibration=job.calibration_key,
        input_range=job.input_range,
    )


def cache_key(model_sha256: str, options: ConversionOptions) -> str:
    """Same model bytes and same options: the same artifacts."""
    # Unset columns are left out, so a job asked before int8 existed keeps its key.
    asked = {column: value for column, value in options_to_record(options).items() if value is not None}
    described = json.dumps([model_sha256, asked, options.verify], sort_keys=True)
    return hashlib.sha256(described.encode()).hexdigest()


def find_cached_job(session: Session, key: str, is_stored: Callable[[str], bool]) -> Job | None:
    """A finished job with this cache key whose artifacts are all still stored (`is_stored(their path)`)."""
    candidates = session.scalars(
        select(Job).where(Job.cache_key == key, Job.status == JobStatus.SUCCEEDED.value).order_by(Job.id.desc())
    )
    for job in candidates:
        if job.artifacts and all(a.deleted_at is None and is_stored(a.path) for a in job.artifacts):
            return job
    return None


def record_result(session: Session, job: Job, result: ConversionResult, retention: timedelta) -> None:
    """A finished conversion: its artifacts, timings, versions and validation."""
    now = utcnow()
    for artifact in result.artifacts:
        session.add(
            Artifact(
                job_id=job.id,
                kind=artifact.target.value,
                quantization=artifact.quantization.value,
                file_name=Path(artifact.path).name,
                path=artifact.path,
                size=artifact.size,
                sha256=artifact.sha256,
                created_at=now,
                expires_at=now + retention,
            )
        )
    chart = result.quant_search.get("chart")
    if chart:  # a record like the files', so that cleanup, cache hits and resending treat it as one of them
        session.add(
            Artifact(
                job_id=job.id,
                kind=CHART_KIND,
                quantization=result.quant_search["mode"],
                file_name=Path(chart["path"]).name,
                path=chart["path"],
                size=chart["size"],
                sha256=chart["sha256"],
                created_at=now,
                expires_at=now + retention,
            )
        )
    job.finished_at = now
    job.timings = result.timings
    job.tool_versions = result.versions
    job.result = result.to_dict()
    job.error_log = result.log[-100_000:]
    withheld = withheld_targets(result)
    if withheld and not result.artifacts:
        job.status, job.stage = JobStatus.FAILED.value, "failed"
    else:
        job.status, job.stage = (JobStatus.PARTIAL if withheld else JobStatus.SUCCEEDED).value, "done"
    job.error_message = "; ".join(f"{target}: {reason}" for target, reason in withheld.items())


def withheld_targets(result: ConversionResult) -> dict[str, str]:
    """The artifacts that failed to load or run, and were therefore not kept: `target` (with its quantization
    when not none) -> why."""
    withheld = {}
    for check in result.validation:
        if check.status == ERROR:
            quantization = "" if check.quantization is Quantization.NONE else f" {check.quantization.value}"
            withheld[f"{check.target.value}{quantization}"] = check.message
    return withheld


def copy_cached_result(session: Session, job: Job, cached: Job) -> None:
    """Finish `job` with the artifacts of an identical earlier job; no conversion runs."""
    now = utcnow()
    for artifact in cached.artifacts:
        session.add(
            Artifact(
                job_id=job.id,
                kind=artifact.kind,
                quantization=artifact.quantization,
                file_name=artifact.file_name,
                path=artifact.path,
                size=artifact.size,
                sha256=artifact.sha256,
                created_at=now,
                expires_at=artifact.expires_at,
                telegram_file_id=artifact.telegram_file_id,
            )
        )
    job.status = JobStatus.SUCCEEDED.value
    job.stage = "done"
    job.started_at = job.finished_at = now
    job.cached_from_job_id = cached.id
    job.timings = {}
    job.tool_versions = dict(cached.tool_versions)
    job.result = dict(cached.result)


def finish_failed(job: Job, message: str, log: str = "") -> None:
    job.status = JobStatus.FAILED.value
    job.stage = "failed"
    job.finished_at = utcnow()
    job.error_message = message
    job.error_log = log[-100_000:]


def queue_position(session: Session, job: Job) -> int:
    """1 for the next job to start; 0 once it is running or finished."""
    if job.status not in WAITING:
        return 0
    ahead = (
        session.scalar(
            select(func.count()).select_from(Job).where(Job.status.in_(WAITING), Job.created_at < job.created_at)
        )
        or 0
    )
    return int(ahead) + 1


def running_user_ids(session: Session) -> set[int]:
    return set(session.scalars(select(Job.user_id).where(Job.status == JobStatus.RUNNING.value)))


def waiting_jobs(session: Session) -> list[Job]:
    return list(session.scalars(select(Job).where(Job.status.in_(WAITING)).order_by(Job.created_at, Job.id)))

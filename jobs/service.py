"""The job service: every conversion is a job that exists in the database before it runs, waits
its turn fairly (one running job per user), runs on an execution backend, survives restarts and
reports its progress as events.

    service = JobService(settings, session_factory)
    service.subscribe(print)
    service.start()
    job_id = service.submit(user_id, model_id, ConversionOptions())
"""

from __future__ import annotations

import logging
import queue
import shutil
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from converter.options import ConversionOptions
from converter.result import Artifact, ArtifactCheck, check_to_dict
from db.models import Job, JobStatus, UploadedModel, utcnow
from db.session import open_database
from jobs import records
from jobs.backend import BackendEvent, ExecutionBackend, backend_from_settings
from jobs.catalog import Catalog
from jobs.cleanup import start_cleanup_scheduler
from jobs.events import FINAL_KINDS, EventKind, FailureReason, JobEvent, JobPhase, Stage, stored_stage
from jobs.job_conversion import JobArguments
from jobs.settings import Settings
from jobs.storage import storage_from_settings, stored_key

log = logging.getLogger(__name__)

__all__ = ["JobEvent", "JobService", "JobView", "ready_file"]  # JobEvent re-exported for its readers


def ready_file(artifact: Artifact, check: ArtifactCheck | None) -> dict[str, Any]:
    """A delivered artifact as the bot sends it: its kind, quantization, storage key, whether it is a folder
    (sent as a zip) and its check (JSON-like)."""
    return {
        "kind": artifact.target.value,
        "quantization": artifact.quantization.value,
        "path": artifact.path,
        "folder": bool(artifact.files),
        "check": check_to_dict(check) if check is not None else None,
    }


@dataclass(frozen=True)
class JobView:
    """A snapshot of one job."""

    id: int
    user_id: int
    status: str
    stage: str
    position: int
    error_message: str
    artifacts: tuple[str, ...]
    result: dict[str, Any]


class JobService:
    """Submit, look at, cancel and follow conversion jobs."""

    def __init__(
        self,
        settings: Settings,
        session_factory: sessionmaker[Session],
        backend: ExecutionBackend | None = None,
        reuse_results: bool = True,
    ) -> None:
        self.settings = settings
        self.reuse_results = reuse_results  # off only in benchmarks, which must convert every time
        self.sessions = session_factory
        self.storage = storage_from_settings(settings)  # uploads and artifacts: the data folder or S3
        self.catalog = Catalog(settings, session_factory, self.storage)  # what the edges read and record
        self.backend = backend or backend_from_settings(settings)
        self._told_no_converter: set[int] = set()  # waiting jobs whose users heard that no converter is alive
        self._subscribers: list[Callable[[JobEvent], None]] = []
        self._cancel_requests: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def open(cls, settings: Settings) -> JobService:
        """A service on the settings' database, waited for and migrated to the newest revision first."""
        return cls(settings, open_database(settings.sqlalchemy_url))

    # -- life cycle

    def schedule_cleanup(self) -> BackgroundScheduler:
        """Start the cleanup policy on its schedule (the caller shuts the scheduler down)."""
        return start_cleanup_scheduler(self.settings, self.sessions)

    def start(self, dispatch: bool = True) -> None:
        """Recover jobs a previous process left running, start the workers and the dispatcher.
        With `dispatch=False` no dispatcher thread runs: the caller (a test) calls `dispatch_once`."""
        self.settings.tmp_dir.mkdir(parents=True, exist_ok=True)
        self.storage.check()  # StorageError naming the setting at fault: bad storage fails at start
        self._recover_interrupted()
        self.backend.start()
        if dispatch:
            self._thread = threading.Thread(target=self._dispatch_forever, name="convbot-jobs", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop dispatching and the workers. Running jobs stay 'running' and are recovered at the next start."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(10)
        self.backend.stop()

    def subscribe(self, callback: Callable[[JobEvent], None]) -> None:
        """Call `callback` (from the dispatcher thread) with every event."""
        self._subscribers.append(callback)

    # -- the interface

    def submit(self, user_id: int, model_id: int, options: ConversionOptions) -> int:
        """Record a job and queue it, or finish it at once from an identical earlier job."""
        with self.sessions() as session:
            model = session.get(UploadedModel, model_id)
            if model is None or model.deleted_at is not None:
                raise ValueError(f"model {model_id} is not stored (any more)")
            key = records.cache_key(model.sha256, options)
            job = Job(user_id=user_id, model_id=model_id, cache_key=key, **records.options_to_record(options))
            session.add(job)
            session.flush()
            cached = records.find_cached_job(session, key, self._is_stored) if self.reuse_results else None
            if cached is not None:
                records.copy_cached_result(session, job, cached)
                event = JobEvent(job.id, user_id, EventKind.SUCCEEDED, stage=JobPhase.DONE, cached=True)
            else:
                event = JobEvent(
                    job.id,
                    user_id,
                    EventKind.QUEUED,
                    stage=JobPhase.QUEUED,
                    position=records.queue_position(session, job),
                )
            session.commit()
        self._emit(event)
        self._wake.set()
        return event.job_id

    def status(self, job_id: int) -> JobView | None:
        with self.sessions() as session:
            job = session.get(Job, job_id)
            if job is None:
                return None
            return JobView(
                job.id,
                job.user_id,
                job.status,
                job.stage,
                records.queue_position(session, job),
                job.error_message,
                tuple(a.path for a in job.artifacts if a.deleted_at is None),
                dict(job.result),
            )

    def cancel(self, job_id: int, user_id: int | None = None) -> bool:
        """Cancel a queued job (dropped) or a running one (its worker is killed). False if it was not the
        user's, or already finished."""
        with self.sessions() as session:
            job = session.get(Job, job_id)
            if job is None or (user_id is not None and job.user_id != user_id) or JobStatus(job.status).finished:
                return False
            was_running = job.status == JobStatus.RUNNING.value
            job.status, job.stage, job.finished_at = JobStatus.CANCELLED.value, JobPhase.CANCELLED.value, utcnow()
            session.commit()
            event = JobEvent(job.id, job.user_id, EventKind.CANCELLED, stage=JobPhase.CANCELLED)
        if was_running:
            self._cancel_requests.put(job_id)
        self._wake.set()
        self._emit(event)
        return True

    def wait(self, job_id: int, timeout: float) -> JobView:
        """Block until the job finishes (for the CLI and tests)."""
        done = threading.Event()

        def watch(event: JobEvent) -> None:
            if event.job_id == job_id and event.kind in FINAL_KINDS:
                done.set()

        self.subscribe(watch)
        try:
            view = self.status(job_id)
            if view is not None and not JobStatus(view.status).finished:
                done.wait(timeout)
            view = self.status(job_id)
        finally:
            self._subscribers.remove(watch)
        if view is None:
            raise KeyError(job_id)
        return view

    # -- inside

    def _emit(self, event: JobEvent) -> None:
        # key=value pairs so operators can grep by job and user; never file contents or secrets.
        log.info(
            "job=%d user=%d event=%s stage=%s%s%s",
            event.job_id,
            event.user_id,
            event.kind,
            event.stage or "-",
            f" reason={event.reason}" if event.reason else "",
            f" message={event.message!r}" if event.message else "",
        )
        for callback in list(self._subscribers):
            try:
                callback(event)
            except Exception:  # a subscriber's bug must not stop the jobs
                log.exception("job event subscriber failed on %s", event)

    def _recover_interrupted(self) -> None:
        """Jobs left 'running' by a process that died: queued again once, failed the second time."""
        events = []
        with self.sessions() as session:
            for job in session.scalars(select(Job).where(Job.status == JobStatus.RUNNING.value)):
                if job.interruptions >= 1:
                    records.finish_failed(job, "the job was interrupted twice by restarts; send the model again")
                    events.append(self._failed(job, FailureReason.INTERRUPTED_TWICE))
                else:
                    job.interruptions += 1
                    job.status, job.stage, job.started_at = JobStatus.INTERRUPTED.value, JobPhase.QUEUED.value, None
                    events.append(JobEvent(job.id, job.user_id, EventKind.INTERRUPTED, stage=JobPhase.QUEUED))
                log.warning("job %s was running at shutdown: %s", job.id, job.status)
            session.commit()
        for event in events:
            self._emit(event)

    def dispatch_once(self, wait: float = 0.0) -> None:
        """One round of the dispatcher: apply what the backend reported (waiting up to `wait` seconds for
        it), kill the running jobs cancelled meanwhile, then start the waiting jobs that may start."""
        for event in self.backend.poll(wait):
            self._apply(event)
        self._handle_cancels()
        self._start_waiting_jobs()

    def _dispatch_forever(self) -> None:
        while not self._stopping.is_set():
            try:
                self.dispatch_once(wait=0.2)
            except Exception:  # keep dispatching; the next round retries
                log.exception("job dispatcher error")
                self._stopping.wait(1)

    def _handle_cancels(self) -> None:
        while True:
            try:
                job_id = self._cancel_requests.get_nowait()
            except queue.Empty:
                return
            self.backend.kill(job_id, FailureReason.CANCELLED)

    def _start_waiting_jobs(self) -> None:
        self._tell_waiting_for_converter()
        if self.backend.free_slots() == 0:
            return
        started: list[tuple[int, JobArguments]] = []
        with self.sessions() as session:
            busy_users = records.running_user_ids(session)
            for job in records.waiting_jobs(session):
                if self.backend.free_slots() - len(started) <= 0:
                    break
                if job.user_id in busy_users:
                    continue  # one running job per user; the rest wait in order
                busy_users.add(job.user_id)
                job.status, job.stage, job.started_at = JobStatus.RUNNING.value, Stage.LOADING.value, utcnow()
                started.append((job.user_id, self._job_arguments(job)))
            session.commit()
        for user_id, arguments in started:
            self.backend.start_job(arguments)
            self._emit(JobEvent(arguments.job_id, user_id, EventKind.STAGE, stage=Stage.LOADING))

    def _tell_waiting_for_converter(self) -> None:
        """While no converter is alive (remote workers all gone), each waiting job's user hears it once."""
        if self.backend.converters_alive():
            self._told_no_converter.clear()  # a later outage is told again
            return
        with self.sessions() as session:
            waiting = [(job.id, job.user_id) for job in records.waiting_jobs(session)]
        for job_id, user_id in waiting:
            if job_id not in self._told_no_converter:
                self._told_no_converter.add(job_id)
                self._emit(JobEvent(job_id, user_id, EventKind.WAITING_FOR_CONVERTER, stage=JobPhase.QUEUED))

    def _is_stored(self, recorded: str) -> bool:
        return self.storage.exists(stored_key(recorded, self.settings.data_dir))

    def _job_arguments(self, job: Job) -> JobArguments:
        return JobArguments(
            job.id,
            stored_key(job.model.storage_path, self.settings.data_dir),
            job.model.original_name,
            replace(records.options_from_job(job), max_calibration_mb=self.settings.max_calibration_mb),
        )

    def _apply(self, event: BackendEvent) -> None:
        with self.sessions() as session:
            job = session.get(Job, event.job_id)
            if job is None or job.status != JobStatus.RUNNING.value:
                return  # cancelled meanwhile: its kill or late result changes nothing
            if event.kind == "progress":
                stage = Stage(event.stage)  # the job's stage column stores the converter's stage id
                if stage == job.stage:
                    return
                job.stage = stage.value
                out = JobEvent(job.id, job.user_id, EventKind.STAGE, stage=stage)
            elif event.kind == "artifact":
                artifact, check = event.result
                out = JobEvent(
                    job.id,
                    job.user_id,
                    EventKind.ARTIFACT,
                    stage=stored_stage(job.stage),
                    artifact=ready_file(artifact, check),
                )
            elif event.kind == "done":
                retention = timedelta(hours=self.settings.retention_hours)
                records.record_result(session, job, event.result, retention)
                if job.status == JobStatus.FAILED.value:  # no artifact ran: nothing to deliver
                    out = self._failed(job, FailureReason.CONVERSION_ERROR)
                else:  # partial: the message names the targets withheld
                    out = JobEvent(
                        job.id, job.user_id, EventKind.SUCCEEDED, stage=JobPhase.DONE, message=job.error_message
                    )
            elif event.kind == "lost":  # its worker vanished mid-job: it runs again, on another worker
                job.status, job.stage, job.started_at = JobStatus.INTERRUPTED.value, JobPhase.QUEUED.value, None
                out = JobEvent(job.id, job.user_id, EventKind.WORKER_LOST, stage=JobPhase.QUEUED, message=event.message)
            elif event.kind == "unstarted":  # the worker it was sent to vanished before starting it: it waits again
                job.status, job.stage, job.started_at = JobStatus.QUEUED.value, JobPhase.QUEUED.value, None
                session.commit()
                return
            else:
                records.finish_failed(job, event.message, event.log)
                out = self._failed(job, event.reason, event.reason_args)
            session.commit()
        if event.kind in ("done", "failed"):
            shutil.rmtree(self.settings.tmp_dir / f"job-{event.job_id}", ignore_errors=True)
        self._emit(out)

    @staticmethod
    def _failed(
        job: Job, reason: FailureReason, reason_args: Mapping[str, str | int | float] | None = None
    ) -> JobEvent:
        """The event of a job just recorded as failed."""
        return JobEvent(
            job.id,
            job.user_id,
            EventKind.FAILED,
            stage=JobPhase.FAILED,
            message=job.error_message,
            reason=reason,
            reason_args=reason_args or {},
        )

"""The bot's side of conversions on other machines: an ExecutionBackend that sends each job to the
`convbot worker` processes over Celery and hears back from them over Redis (see jobs.celery_app).

The bot keeps deciding who runs when: it hands out only as many jobs as there are idle warm worker
processes (slots), so nothing waits in the broker, fairness (one running job per user, in creation order)
stays the job service's, and a job cancelled while it waits never reaches a worker. Each job it starts is a
run with its own token; events of any other run of that job (an earlier, lost one) are ignored.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any, cast

import redis

from converter.child_process import decode_error, timeout_message
from converter.result import ConversionResult, artifact_from_dict, check_from_dict
from jobs.backend import BackendEvent, ExecutionBackend
from jobs.celery_app import (
    RUN_KEY_SECONDS,
    SLOT_PATTERN,
    SLOT_TTL_SECONDS,
    TASK_NAME,
    check_broker,
    make_app,
    run_key,
)
from jobs.events import FailureReason
from jobs.job_conversion import JobArguments
from jobs.settings import Settings

log = logging.getLogger(__name__)

# A started run whose process has not been heard of for this long was lost with its worker: the job is
# queued again. As long as a slot's key lives, so that a conversion holding the GIL may miss a few beats.
LOST_AFTER_SECONDS = float(SLOT_TTL_SECONDS)
# A slot whose heartbeat is older than this may be dead: it is given no job (a running job's slot is judged
# by LOST_AFTER_SECONDS instead, since a busy process may miss a few beats).
FRESH_SECONDS = 3.0
# A run sent to an idle slot that no worker started within this long (the slot died meanwhile).
START_WITHIN_SECONDS = 10.0
# No fresh worker process seen for this long: waiting users are told that their job waits for a converter
# (the 30 s they may wait to hear it, less the time a heartbeat takes to go stale).
NO_CONVERTER_AFTER_SECONDS = 10.0
MAX_LOSSES = 2  # a job whose worker is lost this often (it kills its converter) fails instead
EVENTS_PER_READ = 500


@dataclass
class _Run:
    job_id: int
    token: str
    task_id: str
    sent_at: float
    started_at: float | None = None  # when its worker said it started
    seen_at: float = 0.0  # the last sign of life: an event or its slot's heartbeat
    where: tuple[str, int] | None = None  # (host, pid) of the process running it


@dataclass(frozen=True)
class Slot:
    """A warm worker process, from its heartbeat."""

    host: str
    pid: int
    run: str  # the run token it converts, "" when idle
    beat_age: float  # seconds since its last heartbeat

    @property
    def fresh(self) -> bool:
        """Heard within FRESH_SECONDS: alive for sure, and given jobs."""
        return self.beat_age < FRESH_SECONDS


class CeleryBackend(ExecutionBackend):
    """Jobs on `convbot worker` machines. Thread-safe like the local pool."""

    def __init__(self, settings: Settings) -> None:
        self.broker_url = settings.broker_url
        self.timeout_seconds = settings.job_timeout_seconds
        self.app = make_app(settings)
        self.events_key = f"convbot:events:{uuid.uuid4().hex}"  # this bot process's list (RunEvents)
        self._client: redis.Redis | None = None
        self._runs: dict[int, _Run] = {}  # job id -> its current run
        self._losses: Counter[int] = Counter()
        self._pending: list[BackendEvent] = []  # events decided here (kills, losses), given at the next poll
        self._slots: list[Slot] = []
        self._converter_seen_at = time.monotonic()
        self._lock = threading.RLock()

    @property
    def client(self) -> redis.Redis:
        if self._client is None:
            raise RuntimeError("the Celery backend is not started")
        return self._client

    # -- ExecutionBackend

    def start(self) -> None:
        """Connect to the broker; SettingsError naming CONVBOT_BROKER_URL when it cannot be reached."""
        with self._lock:
            self._client = check_broker(self.broker_url)
            self._converter_seen_at = time.monotonic()  # workers get a grace period to announce themselves
            self._read_slots()

    def stop(self) -> None:
        """Stop this bot's runs (their jobs stay 'running' and are recovered at the next start, as with the
        local pool, whose workers end with the bot)."""
        with self._lock:
            for job_id in list(self._runs):
                with contextlib.suppress(redis.RedisError, OSError):
                    self._stop_run(self._runs.pop(job_id))
            if self._client is not None:
                with contextlib.suppress(redis.RedisError, OSError):
                    self._client.delete(self.events_key)
                self._client.close()
                self._client = None

    def free_slots(self) -> int:
        with self._lock:
            if self._client is None:
                return 0
            busy = {run.where for run in self._runs.values() if run.where is not None}
            idle = sum(1 for slot in self._slots if slot.fresh and not slot.run and (slot.host, slot.pid) not in busy)
            unplaced = sum(1 for run in self._runs.values() if run.where is None)
            return max(0, idle - unplaced)

    def start_job(self, arguments: JobArguments) -> None:
        token, job_id = uuid.uuid4().hex, arguments.job_id
        with self._lock:
            try:
                sent = self.app.send_task(TASK_NAME, args=[job_id, token, self.events_key, arguments.to_dict()])
            except Exception:  # the broker went away: the job waits again rather than 'running' unsent
                log.exception("job %d could not be sent to the broker", job_id)
                self._pending.append(BackendEvent(job_id, "unstarted", message="the broker could not be reached"))
                return
            log.info("job=%d run=%s task=%s sent to the conversion workers", job_id, token, sent.id)
            now = time.monotonic()
            self._runs[job_id] = _Run(job_id, token, sent.id, now, seen_at=now)

    def kill(self, job_id: int, reason: FailureReason) -> None:
        with self._lock:
            run = self._runs.pop(job_id, None)
            if run is None:
                return
            self._stop_run(run)
            if reason is FailureReason.TIMEOUT:
                message, args = timeout_message(self.timeout_seconds), {"seconds": self.timeout_seconds}
            else:
                message, args = str(reason), {}
            self._pending.append(BackendEvent(job_id, "failed", message=message, reason=reason, reason_args=args))

    def poll(self, timeout: float) -> list[BackendEvent]:
        with self._lock:
            events, self._pending = self._pending, []
            client = self._client
        if client is None:  # stopped: nothing to wait on
            time.sleep(timeout)
            return events
        try:
            raw = self._read_events(client, 0.0 if events else timeout)
        except (redis.RedisError, OSError):  # the broker is away: runs are judged by their heartbeats
            time.sleep(timeout)
            raw = []
        with self._lock:
            for data in raw:
                event = self._event(data)
                if event is not None:
                    events.append(event)
            with contextlib.suppress(redis.RedisError, OSError):
                self._read_slots()
            events.extend(self._watch_runs())
            events.extend(self._pending)
            self._pending = []
        return events

    def converters_alive(self) -> bool:
        with self._lock:
            return time.monotonic() - self._converter_seen_at < NO_CONVERTER_AFTER_SECONDS

    def running_on(self, job_id: int) -> tuple[str, int] | None:
        """(host, pid) of the worker process converting `job_id`, once it has started."""
        with self._lock:
            run = self._runs.get(job_id)
            return None if run is None else run.where

    # -- inside

    def _read_events(self, client: redis.Redis, timeout: float) -> list[dict[str, Any]]:
        """The events waiting on this bot's list, waiting up to `timeout` seconds for the first."""
        first: list[bytes] = []
        if timeout > 0:
            popped = cast("list[bytes] | None", client.blpop([self.events_key], timeout=timeout))
            if popped is None:
                return []
            first = [popped[1]]
        rest = cast("list[bytes] | None", client.lpop(self.events_key, EVENTS_PER_READ)) or []
        return [json.loads(item) for item in [*first, *rest]]

    def _event(self, data: dict[str, Any]) -> BackendEvent | None:
        """A worker's event as the service's BackendEvent; None for a run that is not the job's current one."""
        job_id, kind = int(data["job"]), data["kind"]
        run = self._runs.get(job_id)
        if run is None or run.token != data["run"]:
            return None  # a stopped, lost or superseded run: it changes nothing
        run.seen_at = time.monotonic()
        if kind == "started":
            run.started_at, run.where = run.seen_at, (data["host"], int(data["pid"]))
            return None
        if kind == "progress":
            return BackendEvent(job_id, "progress", stage=data["stage"])
        if kind == "artifact":
            check = data["check"]
            artifact = (artifact_from_dict(data["artifact"]), None if check is None else check_from_dict(check))
            return BackendEvent(job_id, "artifact", result=artifact)
        del self._runs[job_id]
        self._losses.pop(job_id, None)
        if kind == "done":
            return BackendEvent(job_id, "done", result=ConversionResult.from_dict(data["result"]))
        name, message, log = data["error"]
        error = decode_error((name, message, log))
        reason = FailureReason(data.get("reason", FailureReason.CONVERSION_ERROR))
        return BackendEvent(
            job_id,
            "failed",
            message=error.message,
            log=error.log,
            error=error,
            reason=reason,
            reason_args=data.get("reason_args", {}),
        )

    def _read_slots(self) -> None:
        keys = list(self.client.scan_iter(match=SLOT_PATTERN, count=1000))
        with self.client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.get(key)
                pipe.pttl(key)
            replies = pipe.execute()
        slots = []
        for value, ttl_ms in zip(replies[::2], replies[1::2], strict=True):
            if value is not None:
                data = json.loads(value)
                beat_age = SLOT_TTL_SECONDS - ttl_ms / 1000  # its key is set with that TTL at each heartbeat
                slots.append(Slot(data["host"], int(data["pid"]), data["run"], beat_age))
        self._slots = slots
        now = time.monotonic()
        if any(slot.fresh for slot in slots):
            self._converter_seen_at = now
        by_run = {slot.run: slot for slot in slots if slot.run}
        for run in self._runs.values():
            slot = by_run.get(run.token)
            if slot is not None:
                run.seen_at, run.where = max(run.seen_at, now - slot.beat_age), (slot.host, slot.pid)

    def _watch_runs(self) -> list[BackendEvent]:
        """Runs past the time limit are killed; runs whose worker is gone are given back to the service."""
        now, events = time.monotonic(), []
        for run in list(self._runs.values()):
            if run.started_at is not None and now - run.started_at > self.timeout_seconds:
                self.kill(run.job_id, FailureReason.TIMEOUT)  # the worker's own hard limit ends it too
            elif run.started_at is not None and now - run.seen_at > LOST_AFTER_SECONDS:
                events.append(self._lost(run, "the conversion worker running it was lost"))
            elif run.started_at is None and now - run.sent_at > START_WITHIN_SECONDS:
                events.append(self._lost(run, "no conversion worker started it"))
        return events

    def _lost(self, run: _Run, why: str) -> BackendEvent:
        """The job's run is over without an end: the job runs again (a `lost` event puts it back in the
        queue), or fails when its workers were lost too often under it."""
        del self._runs[run.job_id]
        self._stop_run(run)  # should the worker be alive after all, its run ends and its events are ignored
        if run.started_at is None:
            return BackendEvent(run.job_id, "unstarted", message=why)
        self._losses[run.job_id] += 1
        if self._losses[run.job_id] < MAX_LOSSES:
            return BackendEvent(run.job_id, "lost", message=why)
        del self._losses[run.job_id]
        message = f"{why}, {MAX_LOSSES} times"
        return BackendEvent(
            run.job_id, "failed", message=message, reason=FailureReason.CRASH, reason_args={"cause": "worker lost"}
        )

    def _stop_run(self, run: _Run) -> None:
        """Mark the run finished (a worker that has not started it yet, or gets it again, skips it) and kill
        the process running it, if any."""
        self.client.set(run_key(run.token), "finished", ex=RUN_KEY_SECONDS)
        self.app.control.revoke(run.task_id, terminate=True, signal="SIGKILL")

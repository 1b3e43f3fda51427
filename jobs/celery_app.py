"""Conversions on other machines: the Celery app (Redis broker) and the task a `convbot worker` runs.

The bot sends one task per run of a job: its id, a run token and its arguments, as JSON only. The worker
converts in a warm process (TensorFlow imported once per process, at `worker_process_init`) and sends
what happens back to the bot over Redis (see `RunEvents`). Celery gives the queue, late acknowledgement
with redelivery of a lost worker's task, revoke-and-terminate and hard time limits; the bot watches each
running task's heartbeat itself, because Redis redelivers a lost task only after its visibility timeout.

Keys in the broker's Redis (all under `convbot:`):
    convbot:events:<bot>        a list: the events of every run the bot started (RunEvents)
    convbot:run:<token>         a run claimed by a worker or finished: a token runs at most once
    convbot:slot:<host>:<pid>   a warm worker process, refreshed every HEARTBEAT_SECONDS: its run or ""
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from celery import Celery
from celery.signals import worker_process_init

from converter.child_process import encode_error, freeze_imported_objects, prepare_child
from converter.result import artifact_to_dict, check_to_dict
from jobs.job_conversion import JobArguments, run_job
from jobs.settings import Settings, SettingsError
from jobs.startup_checks import check_services
from jobs.storage import Storage, storage_from_settings

log = logging.getLogger(__name__)

TASK_NAME = "convbot.convert"
HEARTBEAT_SECONDS = 1.0
# A slot (and the run it holds) is gone when its key is not refreshed for this long. Generous beside the
# heartbeat: a conversion may hold Python's GIL for seconds inside TensorFlow's converters.
SLOT_TTL_SECONDS = 10
RUN_KEY_SECONDS = 7 * 24 * 3600  # longer than any redelivery can come
EVENTS_KEY_SECONDS = 24 * 3600  # a bot gone for a day has its list removed
BROKER_CHECK_TIMEOUT_SECONDS = 5.0
WARM_UP_TIMEOUT_SECONDS = 600.0  # importing TensorFlow in a new worker process on a loaded machine


def run_key(token: str) -> str:
    return f"convbot:run:{token}"


SLOT_PATTERN = "convbot:slot:*"


def make_app(settings: Settings) -> Celery:
    """The Celery app for `settings.broker_url`, as the bot and the workers both make it."""
    app = Celery("convbot", broker=settings.broker_url, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],  # never pickle: a message is data, not code
        result_serializer="json",
        task_ignore_result=True,  # the outcome travels as events; no result backend
        task_acks_late=True,  # a task is acknowledged when it ends, so a lost worker's task comes back...
        task_reject_on_worker_lost=True,  # ...also when its process was killed
        worker_prefetch_multiplier=1,  # a worker holds only the task it runs: the bot decides the order
        task_time_limit=settings.job_timeout_seconds,  # hard: the worker kills the process running it
        # Redis redelivers an unacknowledged task after this: longer than any task may run, or a slow job
        # would be handed to a second worker while it still runs.
        broker_transport_options={"visibility_timeout": int(settings.job_timeout_seconds) + 300},
        worker_proc_alive_timeout=WARM_UP_TIMEOUT_SECONDS,  # the process imports TensorFlow before it is up
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )
    app.task(name=TASK_NAME, acks_late=True, reject_on_worker_lost=True)(convert_task)
    return app


def check_broker(url: str) -> redis.Redis:
    """A client of the broker's Redis, or SettingsError naming CONVBOT_BROKER_URL if it cannot be reached."""
    if not url:
        raise SettingsError("CONVBOT_BROKER_URL is not set: a conversion worker needs the broker (redis://host:6379/0)")
    client = redis.Redis.from_url(
        url, socket_timeout=BROKER_CHECK_TIMEOUT_SECONDS + 10, socket_connect_timeout=BROKER_CHECK_TIMEOUT_SECONDS
    )
    try:
        client.ping()
    except (redis.RedisError, OSError, ValueError) as error:
        raise SettingsError(f"CONVBOT_BROKER_URL: cannot reach the broker at {safe_url(url)}: {error}") from None
    return client


def safe_url(url: str) -> str:
    """`url` without its password, for messages and logs."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    return f"{scheme}{sep}{'***@' if at and credentials else ''}{host}"


# -- what travels back: a run's events


@dataclass
class RunEvents:
    """What one run tells the bot: JSON objects pushed on the bot's list, each with the job id and run token.

    A Redis list, pushed here and popped by the one bot: unlike pub/sub nothing is lost while the bot
    reconnects or is busy; each event is read once and a run's events stay in order (a file before `done`).
    A stream's consumer groups and acknowledgements would buy nothing for a single reader."""

    client: redis.Redis
    key: str
    job_id: int
    run: str

    def send(self, kind: str, **fields: Any) -> None:
        with self.client.pipeline() as pipe:
            self._push(pipe, kind, fields)
            pipe.execute()

    def finish(self, kind: str, **fields: Any) -> None:
        """The run's last event; in the same transaction the run is marked finished, so that a second
        delivery of its task (Redis redelivers a lost worker's task even when it had finished) does nothing."""
        with self.client.pipeline() as pipe:
            self._push(pipe, kind, fields)
            pipe.set(run_key(self.run), "finished", ex=RUN_KEY_SECONDS)
            pipe.execute()

    def _push(self, pipe: Any, kind: str, fields: dict[str, Any]) -> None:
        pipe.rpush(self.key, json.dumps({"job": self.job_id, "run": self.run, "kind": kind, **fields}))
        pipe.expire(self.key, EVENTS_KEY_SECONDS)


# -- inside a worker process


@dataclass
class _WarmProcess:
    """A worker process after its warm-up: its broker client and the heartbeat of its slot."""

    client: redis.Redis
    memory_bytes: int
    storage: Storage  # where this worker reads models and writes artifacts
    scratch: Path  # this worker's own folder for a job's files
    slot: str = field(default_factory=lambda: f"convbot:slot:{socket.gethostname()}:{os.getpid()}")
    events: RunEvents | None = None  # of the run in progress

    def start_heartbeat(self) -> None:
        threading.Thread(target=self._beat_forever, name="convbot-heartbeat", daemon=True).start()

    def _beat_forever(self) -> None:
        from jobs.backend import resident_bytes

        while True:
            events = self.events
            if events is not None and resident_bytes(os.getpid()) > self.memory_bytes:
                self._stop_for_memory(events)
            with contextlib.suppress(redis.RedisError, OSError):
                self.beat()
            time.sleep(HEARTBEAT_SECONDS)

    def beat(self) -> None:
        events = self.events
        value = {"host": socket.gethostname(), "pid": os.getpid(), "run": events.run if events else ""}
        self.client.set(self.slot, json.dumps(value), ex=SLOT_TTL_SECONDS)

    def _stop_for_memory(self, events: RunEvents) -> None:
        """The per-job memory cap, as the local pool has it: the job fails and this process dies (the pool
        starts a fresh one), since memory TensorFlow took is not given back."""
        mb = self.memory_bytes // (1024 * 1024)
        with contextlib.suppress(redis.RedisError, OSError):
            events.finish(
                "failed",
                error=["ConversionError", f"the conversion used more than {mb} MB of memory and was stopped", ""],
                reason="memory",
                reason_args={"mb": mb},
            )
        os.kill(os.getpid(), signal.SIGKILL)


_warm: _WarmProcess | None = None


def prepare_worker_processes(settings: Settings) -> None:
    """Warm each worker process as it starts: TensorFlow, Keras and tensorflowjs imported once, then its slot
    announced, so the bot hands out jobs only to processes ready to convert."""
    log_path = settings.data_dir / "logs" / "worker.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)

    def warm_up(**_: Any) -> None:
        global _warm
        from jobs.worker import die_with_parent

        die_with_parent()
        prepare_child(str(log_path))
        from converter.conversion import tool_versions

        tool_versions()
        freeze_imported_objects()
        # The storage's client is made here, in the process that uses it: an S3 client must not cross a fork.
        _warm = _WarmProcess(
            check_broker(settings.broker_url),
            settings.job_memory_mb * 1024 * 1024,
            storage_from_settings(settings),
            settings.tmp_dir,
        )
        _warm.beat()
        _warm.start_heartbeat()

    worker_process_init.connect(warm_up, weak=False)


def convert_task(job_id: int, run: str, events_key: str, arguments: dict[str, Any]) -> None:
    """Run one job's conversion in this warm process, its events to `events_key`; a run token runs once."""
    warm = _warm
    if warm is None:
        raise RuntimeError("convbot's task runs only in a `convbot worker` process")
    if not warm.client.set(run_key(run), "claimed", nx=True, ex=RUN_KEY_SECONDS):
        log.warning("job %d run %s was delivered again after it ran or was stopped: skipped", job_id, run)
        return
    events = RunEvents(warm.client, events_key, job_id, run)
    warm.events = events
    warm.beat()
    try:
        events.send("started", host=socket.gethostname(), pid=os.getpid())
        _convert(events, JobArguments.from_dict(arguments), warm.storage, warm.scratch)
    finally:
        warm.events = None
        with contextlib.suppress(redis.RedisError, OSError):
            warm.beat()


def _convert(events: RunEvents, arguments: JobArguments, storage: Storage, scratch: Path) -> None:
    def progress(stage: str) -> None:
        events.send("progress", stage=stage)

    def artifact_ready(artifact: Any, check: Any) -> None:
        events.send("artifact", artifact=artifact_to_dict(artifact), check=check_to_dict(check) if check else None)

    try:
        result = run_job(arguments, storage, scratch, progress, artifact_ready)
    except Exception as error:  # fails the job; an unexpected error with its traceback for the record
        events.finish("failed", error=list(encode_error(error)))
    else:
        events.finish("done", result=result.to_dict())


def run_worker(settings: Settings) -> int:
    """`convbot worker`: a Celery worker with CONVBOT_WORKERS warm processes; needs only the broker."""
    check_broker(settings.broker_url)  # names CONVBOT_BROKER_URL when it is not set, too
    check_services(settings)
    app = make_app(settings)
    prepare_worker_processes(settings)
    app.worker_main(
        [
            "worker",
            "--loglevel=INFO",
            "--pool=prefork",
            f"--concurrency={settings.workers}",
            f"--hostname=convbot-{os.getpid()}@%h",  # unique when several workers share a machine
            "--without-gossip",  # workers need not know each other: the bot decides
            "--without-mingle",
        ]
    )
    return 0

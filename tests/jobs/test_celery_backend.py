"""The job service on the Celery backend: two real `convbot worker` processes (each its own process group,
data folder and log) on a private Redis, converting real models.

The workers start once for the module (each imports TensorFlow, 10-30 s); the tests run in file order and the
last one stops them. The bot's side and the workers share only the broker and an S3 storage (SeaweedFS): each
worker has its own data folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
from sqlalchemy.orm import Session, sessionmaker

from converter import ConversionOptions, Target
from db.models import Job
from jobs.celery_backend import CeleryBackend
from jobs.events import FailureReason
from jobs.service import JobService
from jobs.storage import storage_from_settings
from tests.conversion_workers import Worker, process_alive, two_machines, wait_until
from tests.jobs.test_service import Recorder, make_settings, upload
from tests.storage_fixtures import SeaweedS3, s3_variables

ROOT = Path(__file__).resolve().parents[2]
TFLITE_ONLY = ConversionOptions(targets=(Target.TFLITE,))
WARM = 240.0  # a new worker process imports TensorFlow first: 20-30 s on a busy 2-core machine
STORAGE_PREFIX = "celery-tests"  # the bot and the workers share only the broker and this S3 storage
SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the workers never see the database


@pytest.fixture(scope="module")
def workers(
    redis_url: str, seaweedfs_server: SeaweedS3, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[Worker]]:
    storage = s3_variables(seaweedfs_server, STORAGE_PREFIX)
    with two_machines(tmp_path_factory.mktemp("workers"), redis_url, storage) as started:
        yield started


@pytest.fixture
def celery_service(
    tmp_path: Path,
    database_url: str,
    session_factory: sessionmaker[Session],
    redis_url: str,
    s3_environment: SeaweedS3,
) -> Iterator[Any]:
    made: list[JobService] = []
    storage = s3_variables(s3_environment, STORAGE_PREFIX)

    def make(**overrides: Any) -> tuple[JobService, Recorder, Any]:
        settings = make_settings(
            tmp_path,
            database_url,
            broker_url=redis_url,
            storage_url=storage["CONVBOT_STORAGE_URL"],
            s3_endpoint_url=storage["CONVBOT_S3_ENDPOINT_URL"],
            **overrides,
        )
        service = JobService(settings, session_factory, reuse_results=False)  # every job converts
        assert isinstance(service.backend, CeleryBackend)
        recorder = Recorder()
        service.subscribe(recorder)
        service.start()
        made.append(service)
        return service, recorder, settings

    yield make
    for service in made:
        service.stop()


def _artifact_events(events: Recorder, job_id: int) -> list[dict[str, Any]]:
    return [e.artifact for _, e in events.events if e.job_id == job_id and e.kind == "artifact" and e.artifact]


def _tflite_outputs(path: str, image: np.ndarray) -> np.ndarray:
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(model_path=path)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], image)
    interpreter.invoke()
    return np.asarray(interpreter.get_tensor(interpreter.get_output_details()[0]["index"]))


@pytest.mark.parametrize(
    ("url", "said"),
    [("redis://127.0.0.1:1/0", "cannot reach the broker at redis://127.0.0.1:1/0"), ("http://x", "a Redis URL")],
)
def test_a_worker_with_a_bad_broker_says_so_in_one_line(url: str, said: str, tmp_path: Path) -> None:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", "worker"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT), "CONVBOT_BROKER_URL": url},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert time.monotonic() - started < 10
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "CONVBOT_BROKER_URL" in lines[0] and said in lines[0], done.stderr


@SQLITE
def test_a_keras_model_converts_on_a_worker_and_its_file_computes_like_the_source(
    workers: list[Worker], celery_service: Any, session_factory: sessionmaker[Session], keras_h5: Any, tmp_path: Path
) -> None:
    service, events, settings = celery_service()
    wait_until(lambda: service.backend.free_slots() >= 1, WARM, "a warm worker")
    user, model = upload(session_factory, settings, keras_h5.path, "classifier.h5", 1)
    job_id = service.submit(user, model, TFLITE_ONLY)
    events.wait_for(job_id, "succeeded")

    stages = [e.stage for _, e in events.events if e.job_id == job_id and e.kind == "stage"]
    assert stages == ["loading", "load_tensorflow", "load", "convert_tflite", "validate"]  # progress from the worker
    [sent] = _artifact_events(events, job_id)
    assert sent["kind"] == "tflite" and sent["check"]["status"] == "passed"
    with session_factory() as session:
        job = session.get(Job, job_id)
        assert job is not None and job.status == "succeeded" and "tensorflow" in job.tool_versions
        [artifact] = job.artifacts
        assert artifact.path == sent["path"] == f"artifacts/{job_id}/classifier.tflite"  # a key in the S3 storage
    assert not any((worker.folder / "data" / "artifacts").exists() for worker in workers)  # nothing on their disks
    stored = storage_from_settings(settings).local_path(sent["path"], tmp_path / "fetched")

    import keras

    image = np.random.default_rng(3).random((1, 8, 8, 3), dtype=np.float32)
    expected = keras.models.load_model(keras_h5.path)(image).numpy()
    np.testing.assert_allclose(_tflite_outputs(str(stored), image), expected, atol=1e-5)


@SQLITE
def test_a_task_delivered_again_after_it_ran_changes_nothing(
    workers: list[Worker], redis_url: str, celery_service: Any, session_factory: sessionmaker[Session], keras_h5: Any
) -> None:
    service, events, settings = celery_service()
    broker = redis.Redis.from_url(redis_url)
    wait_until(lambda: service.backend.free_slots() >= 1, WARM, "a warm worker")
    user, model = upload(session_factory, settings, keras_h5.path, "twice.h5", 2)
    job_id = service.submit(user, model, TFLITE_ONLY)
    # While it runs, its message waits unacknowledged (late ack); keep a copy, as Redis keeps it for redelivery.
    unacked = wait_until(lambda: broker.hgetall("unacked"), 60, "the task's unacknowledged message")
    [(_, kept)] = unacked.items()
    events.wait_for(job_id, "succeeded")
    before = len(events.events)

    # The worker's ack was lost (it died right after finishing): Redis hands the same message out again.
    message, _exchange, queue = json.loads(kept)
    broker.lpush(queue or "celery", json.dumps(message))
    wait_until(
        lambda: broker.llen(queue or "celery") == 0 and not broker.hlen("unacked"), 60, "the redelivery consumed"
    )
    wait_until(lambda: any("delivered again" in w.log() for w in workers), 10, "the worker to skip it")
    time.sleep(1.5)  # what the dispatcher would hear, it has heard by now

    assert len(events.events) == before  # no second set of files, no second result
    assert len(_artifact_events(events, job_id)) == 1 and events.kinds(job_id).count("succeeded") == 1
    with session_factory() as session:
        job = session.get(Job, job_id)
        assert job is not None and len(job.artifacts) == 1


@SQLITE
def test_cancelling_a_running_job_kills_its_process_within_5_s(
    workers: list[Worker], celery_service: Any, session_factory: sessionmaker[Session], keras_h5: Any
) -> None:
    service, events, settings = celery_service()
    wait_until(lambda: service.backend.free_slots() >= 1, WARM, "a warm worker")
    user, model = upload(session_factory, settings, keras_h5.path, "slow_cancel.h5", 3)
    job_id = service.submit(user, model, TFLITE_ONLY)
    _host, pid = wait_until(lambda: service.backend.running_on(job_id), 60, "the job to start on a worker")
    assert any(worker.holds(pid) for worker in workers)

    asked = time.monotonic()
    assert service.cancel(job_id, user_id=user)
    wait_until(lambda: not process_alive(pid), 5, f"the process converting job {job_id} ({pid}) to die")
    killed_in = time.monotonic() - asked
    events.wait_for(job_id, "cancelled")
    time.sleep(1)
    assert service.status(job_id).status == "cancelled"
    assert "failed" not in events.kinds(job_id) and not _artifact_events(events, job_id)
    print(f"cancel: the converting process was gone {killed_in:.2f} s after the cancel")


@SQLITE
def test_a_job_whose_worker_machine_is_lost_finishes_on_the_other(
    workers: list[Worker], celery_service: Any, session_factory: sessionmaker[Session], keras_h5: Any
) -> None:
    service, events, settings = celery_service()
    wait_until(lambda: service.backend.free_slots() >= 1, WARM, "a warm worker")
    user, model = upload(session_factory, settings, keras_h5.path, "slow_lost.h5", 4)
    job_id = service.submit(user, model, TFLITE_ONLY)
    _host, pid = wait_until(lambda: service.backend.running_on(job_id), 60, "the job to start on a worker")
    [lost] = [worker for worker in workers if worker.holds(pid)]

    killed = time.monotonic()
    lost.kill_group()  # during the 10 s the slow model sleeps: nothing converted yet
    noticed = events.wait_for(job_id, "worker_lost", timeout=30)  # seen lost by its heartbeat, queued again
    print(f"lost worker: its job queued again {noticed - killed:.1f} s after the kill")
    events.wait_for(job_id, "succeeded")
    assert events.kinds(job_id).count("succeeded") == 1 and "failed" not in events.kinds(job_id)
    [sent] = _artifact_events(events, job_id)
    with session_factory() as session:
        job = session.get(Job, job_id)
        assert job is not None and job.status == "succeeded" and [a.path for a in job.artifacts] == [sent["path"]]
    assert storage_from_settings(settings).exists(sent["path"])  # in the S3 storage


@SQLITE
def test_a_job_over_its_time_limit_is_killed_on_its_worker_and_fails_saying_so(
    workers: list[Worker], celery_service: Any, session_factory: sessionmaker[Session], keras_h5: Any
) -> None:
    service, events, settings = celery_service(job_timeout_seconds=4)
    wait_until(lambda: service.backend.free_slots() >= 1, WARM, "a warm worker")
    user, model = upload(session_factory, settings, keras_h5.path, "slow_timeout.h5", 6)  # sleeps 10 s first
    job_id = service.submit(user, model, TFLITE_ONLY)
    _host, pid = wait_until(lambda: service.backend.running_on(job_id), 60, "the job to start on a worker")
    events.wait_for(job_id, "failed", timeout=30)
    failure = next(e for _, e in events.events if e.job_id == job_id and e.kind == "failed")
    assert failure.reason == FailureReason.TIMEOUT and failure.reason_args == {"seconds": 4}
    assert service.status(job_id).error_message == "the conversion took longer than 4 s and was stopped"
    wait_until(lambda: not process_alive(pid), 5, f"the process converting job {job_id} ({pid}) to be killed")
    assert not _artifact_events(events, job_id)


@SQLITE
def test_a_job_over_the_memory_cap_fails_saying_so(
    workers: list[Worker],
    celery_service: Any,
    session_factory: sessionmaker[Session],
    keras_h5: Any,
    redis_url: str,
    seaweedfs_server: SeaweedS3,
    tmp_path: Path,
) -> None:
    for worker in workers:  # only the capped worker may take the job
        worker.kill_group()
    storage = s3_variables(seaweedfs_server, STORAGE_PREFIX)
    capped = Worker("capped", tmp_path / "capped", redis_url, storage, {"CONVBOT_JOB_MEMORY_MB": "300"})
    capped.start()  # a warm process holds TensorFlow: well above 300 MB once a job runs
    try:
        service, events, settings = celery_service()
        wait_until(lambda: service.backend.free_slots() >= 1, WARM, "the capped worker")
        # Named slow_*: the worker's test hook waits 10 s before converting (conversion_workers.Worker), so the job
        # runs across the heartbeat's memory checks (1 s apart); this small model alone converts in under 1 s.
        user, model = upload(session_factory, settings, keras_h5.path, "slow_hungry.h5", 7)
        job_id = service.submit(user, model, TFLITE_ONLY)
        events.wait_for(job_id, "failed", timeout=60)
    finally:
        capped.kill_group()
    failure = next(e for _, e in events.events if e.job_id == job_id and e.kind == "failed")
    assert failure.reason == FailureReason.MEMORY and failure.reason_args == {"mb": 300}
    assert service.status(job_id).error_message == "the conversion used more than 300 MB of memory and was stopped"


@SQLITE
def test_with_no_worker_alive_the_user_is_told_and_the_job_runs_when_one_joins(
    workers: list[Worker], celery_service: Any, session_factory: sessionmaker[Session], keras_h5: Any
) -> None:
    for worker in workers:
        worker.kill_group()
    service, events, settings = celery_service()
    user, model = upload(session_factory, settings, keras_h5.path, "alone.h5", 5)
    submitted = time.monotonic()
    job_id = service.submit(user, model, TFLITE_ONLY)
    told = events.wait_for(job_id, "waiting_for_converter", timeout=30)
    assert told - submitted < 30
    print(f"no worker: the user was told {told - submitted:.1f} s after submitting")
    assert service.status(job_id).status == "queued"  # not 'running' with nobody running it

    workers[0].start()
    events.wait_for(job_id, "succeeded")
    assert len(_artifact_events(events, job_id)) == 1

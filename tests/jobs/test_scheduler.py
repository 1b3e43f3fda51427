"""The job service's scheduling rules, on a real database (SQLite and PostgreSQL) with a scripted backend:
fairness, queue positions, cancelling, restart recovery, cached results and failures, each in milliseconds
and without TensorFlow (the end-to-end runs with real workers are in test_service.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from converter.formats import Quantization, Target
from converter.options import ConversionOptions
from db.models import Job, JobStatus
from jobs.events import FailureReason
from jobs.job_conversion import JobArguments
from jobs.service import JobEvent

TFLITE_ONLY = ConversionOptions(targets=(Target.TFLITE,))
TFJS_ONLY = ConversionOptions(targets=(Target.TFJS,))
ROOT = Path(__file__).resolve().parents[2]


def test_jobs_start_in_creation_order_with_one_running_job_per_user(scheduler: Any, upload: Any) -> None:
    jobs = scheduler(slots=2)
    ann, ann_model = upload(1, "ann.pb")
    bob, bob_model = upload(2, "bob.pb")
    ann_first = jobs.service.submit(ann, ann_model, TFLITE_ONLY)
    ann_second = jobs.service.submit(ann, ann_model, TFJS_ONLY)
    bob_first = jobs.service.submit(bob, bob_model, TFLITE_ONLY)
    assert jobs.backend.started == []  # recorded and queued, not yet started

    jobs.dispatch()
    # Two free slots: Ann's second job waits for her first, and Bob's later job goes ahead of it.
    assert jobs.backend.started == [ann_first, bob_first]
    assert jobs.status(ann_second) == "queued"

    jobs.succeed(ann_first)  # Ann's first job ends: her second starts in the same round
    assert jobs.backend.started == [ann_first, bob_first, ann_second]
    assert jobs.backend.arguments[ann_second].options == TFJS_ONLY

    assert [(e.kind, e.stage) for e in jobs.of(ann_first)] == [
        ("queued", "queued"),
        ("stage", "loading"),
        ("stage", "convert_tflite"),
        ("artifact", "convert_tflite"),
        ("stage", "validate"),
        ("succeeded", "done"),
    ]
    artifact = next(e.artifact for e in jobs.of(ann_first) if e.artifact is not None)
    assert artifact["kind"] == "tflite" and artifact["check"]["status"] == "passed"
    view = jobs.service.status(ann_first)
    assert view is not None and view.status == "succeeded" and len(view.artifacts) == 1
    stored = jobs.service.settings.data_dir / view.artifacts[0]  # a storage key: in the data folder here
    assert stored.is_file() and view.result["validation"][0]["status"] == "passed"


def test_no_more_jobs_start_than_the_backend_has_free_slots(scheduler: Any, upload: Any) -> None:
    jobs = scheduler(slots=1)
    ids = [jobs.service.submit(*upload(telegram_id, f"m{telegram_id}.pb"), TFLITE_ONLY) for telegram_id in (1, 2, 3)]
    jobs.dispatch()
    assert jobs.backend.started == ids[:1]
    jobs.backend.slots = 3
    jobs.dispatch()
    assert jobs.backend.started == ids


def test_queue_positions_count_the_waiting_jobs_ahead(scheduler: Any, upload: Any) -> None:
    jobs = scheduler(slots=1)
    ids = [jobs.service.submit(*upload(telegram_id, f"m{telegram_id}.pb"), TFLITE_ONLY) for telegram_id in (1, 2, 3)]
    assert [jobs.of(job_id)[0].position for job_id in ids] == [1, 2, 3]  # told when queued
    assert [jobs.position(job_id) for job_id in ids] == [1, 2, 3]

    jobs.dispatch()
    assert [jobs.position(job_id) for job_id in ids] == [0, 1, 2]  # running: no longer in the queue
    jobs.succeed(ids[0])
    assert [jobs.position(job_id) for job_id in ids] == [0, 0, 1]


def test_a_cancelled_queued_job_never_starts(scheduler: Any, upload: Any) -> None:
    jobs = scheduler(slots=1)
    user, model = upload(3, "pose.pb")
    running = jobs.service.submit(user, model, TFLITE_ONLY)
    queued = jobs.service.submit(user, model, TFJS_ONLY)
    jobs.dispatch()
    assert jobs.service.cancel(queued, user_id=user + 1000) is False  # not theirs
    assert jobs.service.cancel(queued, user_id=user) is True

    jobs.succeed(running)
    jobs.dispatch()
    assert jobs.backend.started == [running]
    assert jobs.backend.killed == {}
    assert jobs.kinds(queued) == ["queued", "cancelled"]
    assert jobs.status(queued) == "cancelled"
    assert jobs.service.cancel(running, user_id=user) is False  # already finished


def test_cancelling_a_running_job_kills_it_and_frees_its_slot(scheduler: Any, upload: Any) -> None:
    jobs = scheduler(slots=1)
    user, model = upload(4, "pose.pb")
    running = jobs.service.submit(user, model, TFLITE_ONLY)
    following = jobs.service.submit(user, model, TFJS_ONLY)
    jobs.dispatch()
    jobs.backend.progress(running, "convert_tflite")
    jobs.dispatch()

    assert jobs.service.cancel(running, user_id=user) is True
    jobs.dispatch()  # the dispatcher kills it: the backend's 'failed' for it follows
    assert jobs.backend.killed == {running: "cancelled"}
    jobs.dispatch()  # ... and changes nothing: the user was told 'cancelled', and the next job starts
    assert jobs.kinds(running) == ["queued", "stage", "stage", "cancelled"]
    assert jobs.status(running) == "cancelled"
    assert jobs.backend.started == [running, following]


def test_a_restart_reruns_an_interrupted_job_once(scheduler: Any, upload: Any) -> None:
    before = scheduler(slots=1)
    user, model = upload(9, "stuck.pb")
    job_id = before.service.submit(user, model, TFLITE_ONLY)
    before.dispatch()
    before.service.stop()  # the process dies with the job running: the record says so
    assert before.status(job_id) == "running"

    after = scheduler(slots=1)  # a new process on the same database
    assert after.of(job_id) == [JobEvent(job_id, user, "interrupted", stage="queued")]  # its user is told
    assert after.status(job_id) == "interrupted" and after.position(job_id) == 1
    after.dispatch()
    assert after.backend.started == [job_id]  # run once more
    after.succeed(job_id)
    assert after.kinds(job_id) == ["interrupted", "stage", "stage", "artifact", "stage", "succeeded"]
    assert after.status(job_id) == "succeeded"


def test_a_job_interrupted_twice_fails_with_the_reason(
    scheduler: Any, upload: Any, session_factory: sessionmaker[Session]
) -> None:
    user, model = upload(9, "stuck.pb")
    first = scheduler(slots=1)
    job_id = first.service.submit(user, model, TFLITE_ONLY)
    first.dispatch()
    first.service.stop()
    second = scheduler(slots=1)
    second.dispatch()  # re-run, and interrupted again
    second.service.stop()

    third = scheduler(slots=1)
    third.dispatch()
    reason = "the job was interrupted twice by restarts; send the model again"
    (failed,) = third.of(job_id)
    assert (failed.kind, failed.message, failed.reason) == ("failed", reason, FailureReason.INTERRUPTED_TWICE)
    assert third.backend.started == []  # not run a third time
    with session_factory() as session:
        job = session.get(Job, job_id)
        assert job is not None and job.status == JobStatus.FAILED.value
        assert job.interruptions == 1 and job.error_message == reason and job.finished_at is not None


def test_the_same_model_bytes_and_options_reuse_the_earlier_files(scheduler: Any, upload: Any) -> None:
    jobs = scheduler(slots=1)
    ann, ann_model = upload(1, "pose.pb", b"the same bytes")
    bob, bob_model = upload(2, "renamed.pb", b"the same bytes")
    first = jobs.service.submit(ann, ann_model, TFLITE_ONLY)
    jobs.dispatch()
    jobs.succeed(first)

    again = jobs.service.submit(bob, bob_model, TFLITE_ONLY)
    assert jobs.of(again) == [JobEvent(again, bob, "succeeded", stage="done", cached=True)]
    other_options = jobs.service.submit(bob, bob_model, TFJS_ONLY)
    jobs.dispatch()
    assert jobs.backend.started == [first, other_options]  # the cached job never ran
    first_view, again_view = jobs.service.status(first), jobs.service.status(again)
    assert first_view is not None and again_view is not None
    assert again_view.status == "succeeded" and again_view.artifacts == first_view.artifacts

    (jobs.service.settings.data_dir / first_view.artifacts[0]).unlink()  # the earlier files are gone: the job runs
    jobs.succeed(other_options)
    third = jobs.service.submit(ann, ann_model, TFLITE_ONLY)
    jobs.dispatch()
    assert jobs.kinds(third) == ["queued", "stage"] and jobs.backend.started[-1] == third


def test_a_failed_job_tells_its_user_why_and_the_next_job_runs(scheduler: Any, upload: Any) -> None:
    jobs = scheduler(slots=1)
    user, model = upload(5, "pose.pb")
    failing = jobs.service.submit(user, model, TFLITE_ONLY)
    lost = jobs.service.submit(user, model, TFJS_ONLY)
    jobs.dispatch()
    message = "the model uses the op Foo, which TFLite has no kernel for: convert with --flex"
    jobs.backend.fail(failing, message, log="Traceback: ...")
    jobs.dispatch()
    assert jobs.of(failing)[-1] == JobEvent(
        failing, user, "failed", stage="failed", message=message, reason=FailureReason.CONVERSION_ERROR
    )
    view = jobs.service.status(failing)
    assert view is not None and view.status == "failed" and view.error_message == message

    assert jobs.backend.started == [failing, lost]  # the user's next job
    jobs.backend.lose(lost)
    jobs.dispatch()
    assert jobs.of(lost)[-1].message == "the converter was killed (out of memory?)"
    assert jobs.status(lost) == "failed"


def test_the_scheduler_tests_never_import_tensorflow() -> None:
    # Run this module's tests (SQLite) in a fresh interpreter: in this one, other modules may import TensorFlow.
    code = (
        "import sys, pytest\n"
        f"code = pytest.main(['-q', '-p', 'no:cacheprovider', '-k', 'sqlite', {__file__!r}])\n"
        "assert code == 0, code\n"
        "print('tensorflow' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[-1] == "False"


def test_an_int8_job_carries_its_samples_key_to_the_worker(scheduler: Any, upload: Any, tmp_path: Path) -> None:
    jobs = scheduler(slots=1)
    ann, model = upload(1, "ann.pb")
    samples = tmp_path / "photos.zip"
    samples.write_bytes(b"PK\x05\x06" + bytes(18))
    key = jobs.service.catalog.store_samples(samples, "photos.zip")  # as the bot stores them
    int8 = ConversionOptions(
        targets=(Target.TFLITE,), tflite_quantization=Quantization.INT8, calibration=key, input_range="-1,1"
    )
    job_id = jobs.service.submit(ann, model, int8)
    jobs.dispatch()

    arguments = jobs.backend.arguments[job_id]
    assert key.startswith("calibration/") and arguments.calibration_key == key  # a storage key, no local path
    assert arguments.options.input_range == "-1,1"
    assert arguments.options.max_calibration_mb == jobs.service.settings.max_calibration_mb
    assert JobArguments.from_dict(arguments.to_dict()) == arguments  # as it travels to a remote worker
    assert jobs.service.storage.exists(key)

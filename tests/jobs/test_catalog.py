"""What the bot reads through the jobs layer (jobs/catalog.py), on SQLite and PostgreSQL, without
TensorFlow: the views answer what the chat shows, and one user never sees another's jobs."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from converter.formats import Target
from converter.options import ConversionOptions
from db.models import Artifact, Job, utcnow
from jobs.catalog import EXPIRED
from jobs.settings import Settings

TFLITE_ONLY = ConversionOptions(targets=(Target.TFLITE,))
TFJS_ONLY = ConversionOptions(targets=(Target.TFJS,))


def test_an_upload_is_recorded_once_per_content_and_becomes_the_current_model(
    scheduler: Any, settings: Settings, tmp_path: Path
) -> None:
    catalog = scheduler().service.catalog
    ann = catalog.record_user(1, "Ann", "en")
    assert catalog.current_model(ann.id) is None
    source = tmp_path / "pose.pb"
    source.write_bytes(b"graph bytes")
    summary = {"format": "frozen-graph", "suggested_inputs": [], "suggested_outputs": []}

    first = catalog.store_upload(ann.id, source, "pose.pb", summary)
    second = catalog.store_upload(ann.id, source, "pose_again.pb", summary)

    assert catalog.current_model(ann.id) == second
    assert (second.name, second.summary) == ("pose_again.pb", summary)
    assert catalog.model(first.id) == first
    stored = list(settings.models_dir.rglob("*.pb"))
    assert len(stored) == 1 and stored[0].read_bytes() == b"graph bytes"  # the same bytes are kept once
    assert catalog.current_model(catalog.record_user(2, "Bob").id) is None  # another user's upload is not Bob's


def test_recording_a_user_again_keeps_their_language_current(scheduler: Any) -> None:
    catalog = scheduler().service.catalog
    first = catalog.record_user(7, "Zhang", "zh-hans")
    again = catalog.record_user(7, "Zhang Wei", "")
    assert again.id == first.id and again.language == "zh-hans"  # an update without a language keeps it
    assert catalog.record_user(7, "Zhang Wei", "en").language == "en"
    assert catalog.user(first.id) == catalog.record_user(7)


def test_recent_jobs_are_the_users_own_newest_first_and_expired_when_their_files_are_gone(
    scheduler: Any, upload: Any, session_factory: sessionmaker[Session]
) -> None:
    jobs = scheduler()
    ann, ann_model = upload(1, "ann.pb")
    bob, bob_model = upload(2, "bob.pb")
    done = jobs.service.submit(ann, ann_model, TFLITE_ONLY)
    jobs.dispatch()
    jobs.succeed(done)
    waiting = jobs.service.submit(ann, ann_model, TFJS_ONLY)
    bobs = jobs.service.submit(bob, bob_model, TFLITE_ONLY)
    catalog = jobs.service.catalog

    lines = catalog.recent_jobs(ann)
    assert [(line.job_id, line.model, line.targets) for line in lines] == [
        (waiting, "ann.pb", ("tfjs",)),
        (done, "ann.pb", ("tflite",)),
    ]
    assert lines[1].status == "succeeded" and lines[1].delivered and 0 <= lines[1].age_seconds() < 60
    assert catalog.user_job(ann, bobs) is None  # Bob's job is "not found" for Ann
    files = catalog.job_files(done)
    assert files is not None and [f.kind for f in files.files] == ["tflite"]
    assert files.result["validation"][0]["status"] == "passed"

    catalog.remember_file_id(files.files[0].artifact_id, "telegram-file-1")
    again = catalog.job_files(done)
    assert again is not None and again.files[0].telegram_file_id == "telegram-file-1"

    with session_factory() as session:  # the cleanup removed the job's files
        for artifact in session.query(Artifact).filter(Artifact.job_id == done):
            artifact.deleted_at = utcnow()
        session.commit()
    line = catalog.user_job(ann, done)
    assert line is not None and line.status == EXPIRED and not line.delivered
    assert catalog.job_files(done) == type(files)((), files.result)  # no file left to send


def test_cancel_without_a_number_means_the_newest_unfinished_job(scheduler: Any, upload: Any) -> None:
    jobs = scheduler()
    ann, model = upload(1, "ann.pb")
    running = jobs.service.submit(ann, model, TFLITE_ONLY)
    jobs.dispatch()
    queued = jobs.service.submit(ann, model, TFJS_ONLY)
    catalog = jobs.service.catalog
    assert jobs.status(running) == "running" and jobs.status(queued) == "queued"

    assert catalog.latest_unfinished_job(ann) == queued  # the one just asked for, not the older running one
    assert jobs.service.cancel(queued, ann)
    assert catalog.latest_unfinished_job(ann) == running
    jobs.succeed(running)
    assert catalog.latest_unfinished_job(ann) is None


def test_the_daily_count_and_the_admins_counts(
    scheduler: Any, upload: Any, session_factory: sessionmaker[Session]
) -> None:
    jobs = scheduler()
    ann, model = upload(1, "ann.pb")
    bob, _ = upload(2, "bob.pb")
    ids = [jobs.service.submit(ann, model, options) for options in (TFLITE_ONLY, TFJS_ONLY)]
    with session_factory() as session:  # the first job is two days old: out of the 24-hour window
        old = session.get(Job, ids[0])
        assert old is not None
        old.created_at = utcnow() - timedelta(days=2)
        session.commit()
    catalog = jobs.service.catalog

    count, window_ends = catalog.jobs_in_last_day(ann)
    assert count == 1 and timedelta(hours=23) < window_ends - utcnow() <= timedelta(days=1)
    assert catalog.jobs_in_last_day(bob)[0] == 0

    counts = catalog.counts()
    assert counts.users == 2 and counts.jobs_by_status == {"queued": 2}

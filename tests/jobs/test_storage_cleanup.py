"""Cleanup of uploads and artifacts in S3 storage: a real SeaweedFS (tests/storage_fixtures.py, one fresh key
prefix per test) and a real database (SQLite and PostgreSQL, tests/db_fixtures.py).

Records hold the keys the test stored itself. An object's modified time cannot be set back, so, as in
test_cleanup.py, the cleanup runs with a clock a few seconds ahead (`now`) instead of ageing objects.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from db.models import JobStatus, utcnow
from jobs.cleanup import run_cleanup
from jobs.settings import Settings
from jobs.storage import S3Storage
from jobs.storage_cleanup import run_storage_cleanup
from tests.jobs.test_cleanup import OLD, YOUNG, World, deleted, make_settings, tfjs_folder, write
from tests.storage_fixtures import SeaweedS3

KB = 1024


@pytest.fixture
def session(session_factory: sessionmaker[Session]) -> Iterator[Session]:
    with session_factory() as session:
        yield session


@pytest.fixture
def prefix() -> str:
    return f"cleanup/{uuid.uuid4().hex[:12]}"


@pytest.fixture
def storage(s3_environment: SeaweedS3, prefix: str) -> S3Storage:
    return S3Storage(s3_environment.bucket, prefix, s3_environment.endpoint_url)


@pytest.fixture
def s3_settings(s3_environment: SeaweedS3, prefix: str, tmp_path: Path) -> Any:
    """`s3_settings(**overrides)`: settings naming the test's storage, with a local data dir for temp files."""

    def make(**overrides: Any) -> Settings:
        storage_url = f"s3://{s3_environment.bucket}/{prefix}"
        return make_settings(
            tmp_path / "data", storage_url=storage_url, s3_endpoint_url=s3_environment.endpoint_url, **overrides
        )

    return make


@pytest.fixture
def now() -> datetime:
    """The cleanup's clock: five seconds ahead, so objects written now are older than a 2 s retention."""
    return utcnow() + timedelta(seconds=5)


class Stored:
    """Objects put in the storage as the bot and the workers put them, from local files of the test."""

    def __init__(self, storage: S3Storage, folder: Path) -> None:
        self.storage = storage
        self.folder = folder

    def artifact(self, job_id: int, name: str = "m.tflite", size: int = 100) -> str:
        return self.storage.put_artifact(job_id, write(self._fresh() / name, size))

    def tfjs(self, job_id: int, name: str = "m_tfjs") -> str:
        """A TF.js folder of 1000 bytes in two objects."""
        return self.storage.put_artifact(job_id, tfjs_folder(self._fresh() / name))

    def upload(self, name: str = "m.pb", size: int = 100) -> str:
        source = self._fresh() / name
        source.write_bytes(os.urandom(size))  # its own content hash, so its own key
        return self.storage.put_upload(source, name)

    def samples(self, name: str = "samples.npz", size: int = 100) -> str:
        """An int8 job's samples, as the bot stores them."""
        source = self._fresh() / name
        source.write_bytes(os.urandom(size))
        return self.storage.put_calibration(source, name)

    def listed(self) -> set[str]:
        return {stored.key for stored in self.storage.list_files()}

    def _fresh(self) -> Path:
        folder = self.folder / uuid.uuid4().hex
        folder.mkdir(parents=True)
        return folder


@pytest.fixture
def stored(storage: S3Storage, tmp_path: Path) -> Stored:
    return Stored(storage, tmp_path / "sources")


def test_expired_keys_are_removed_and_their_records_marked(
    session: Session, s3_settings: Any, storage: S3Storage, stored: Stored, now: datetime
) -> None:
    settings = s3_settings()
    world = World(session, now)
    old_model = world.model(stored.upload("old.pb", 1000), OLD)
    young_model = world.model(stored.upload("young.pb"), YOUNG)
    job_1, job_2, job_3, job_4 = (world.job() for _ in range(4))
    old_file = world.artifact(stored.artifact(job_1.id, size=2000), timedelta(seconds=3), job=job_1)
    old_folder = world.artifact(stored.tfjs(job_1.id), OLD, job=job_1)
    young_file = world.artifact(stored.artifact(job_2.id), YOUNG, job=job_2)
    young_folder = world.artifact(stored.tfjs(job_2.id), YOUNG, job=job_2)
    # Young by age, but its own expiry has passed.
    early = world.artifact(stored.artifact(job_3.id, size=50), YOUNG, job=job_3, expires_at=now - timedelta(seconds=1))
    # Old, but nothing is stored at its key any more: marked, nothing removed.
    gone = world.artifact(f"artifacts/{job_4.id}/m.tflite", OLD, job=job_4)
    session.commit()

    report = run_storage_cleanup(session, settings, storage, now=now)

    assert report.removed == tuple(sorted([old_model.storage_path, old_file.path, old_folder.path, early.path]))
    assert report.freed_bytes == 1000 + 2000 + 1000 + 50
    assert report.expired_rows == 5
    assert deleted(session, old_model, old_file, old_folder, early, gone) == [True] * 5
    assert deleted(session, young_model, young_file, young_folder) == [False] * 3
    assert old_file.deleted_at == now
    assert stored.listed() == {
        young_model.storage_path,
        young_file.path,
        f"{young_folder.path}/model.json",
        f"{young_folder.path}/group1-shard1of1.bin",
    }

    session.rollback()  # flushed, never committed: the caller owns the transaction
    assert deleted(session, old_model) == [False]


def test_a_shared_key_stays_while_one_record_on_it_lives(
    session: Session, s3_settings: Any, storage: S3Storage, stored: Stored, now: datetime
) -> None:
    settings = s3_settings()
    world = World(session, now)
    job = world.job()
    key = stored.artifact(job.id, size=500)
    original = world.artifact(key, OLD, job=job)
    cache_hit = world.artifact(key, YOUNG)  # another job's record on the same object

    report = run_storage_cleanup(session, settings, storage, now=now)

    assert report.removed == ()
    assert deleted(session, original, cache_hit) == [False, False]
    assert storage.exists(key)

    report = run_storage_cleanup(session, settings, storage, now=now + timedelta(seconds=5))

    assert report.removed == (key,)
    assert report.freed_bytes == 500
    assert deleted(session, original, cache_hit) == [True, True]
    assert not storage.exists(key)


def test_a_busy_jobs_model_and_artifacts_outlive_their_retention(
    session: Session, s3_settings: Any, storage: S3Storage, stored: Stored, now: datetime
) -> None:
    settings = s3_settings()
    world = World(session, now)
    model = world.model(stored.upload(), OLD)
    world.job(JobStatus.RUNNING, model=model)
    interrupted = world.job(JobStatus.INTERRUPTED)  # re-queued after a restart: its files are used again
    artifact = world.artifact(stored.artifact(interrupted.id), OLD, job=interrupted)
    idle = world.model(stored.upload("idle.pb"), OLD)

    report = run_storage_cleanup(session, settings, storage, now=now + OLD)

    assert report.removed == (idle.storage_path,)
    assert deleted(session, model, artifact, idle) == [False, False, True]
    assert storage.exists(model.storage_path) and storage.exists(artifact.path)


def test_int8_samples_are_kept_for_their_unfinished_job_and_go_with_the_model(
    session: Session, s3_settings: Any, storage: S3Storage, stored: Stored, now: datetime
) -> None:
    settings = s3_settings(retention_hours=24)  # the grace is then ORPHAN_GRACE, 10 minutes
    world = World(session, now)
    expired = timedelta(hours=25)
    model = world.model(stored.upload(), expired)
    done = stored.samples("done.zip")
    world.job(JobStatus.SUCCEEDED, model=model, calibration_key=done)
    busy_model = world.model(stored.upload("busy.pb"), expired)
    needed = stored.samples("needed.npz")
    world.job(JobStatus.QUEUED, model=busy_model, calibration_key=needed)
    waiting = stored.samples("waiting.npz")  # stored by the bot, its job not yet submitted

    report = run_storage_cleanup(session, settings, storage, now=now)

    assert set(report.removed) == {done, model.storage_path}
    assert stored.listed() == {busy_model.storage_path, needed, waiting}
    later = run_storage_cleanup(session, settings, storage, now=now + timedelta(minutes=11))
    assert later.removed == ("/".join(waiting.split("/")[:2]),)  # never submitted: an orphan after the grace


def test_orphans_go_after_the_grace_and_not_before(
    session: Session, s3_settings: Any, storage: S3Storage, stored: Stored, now: datetime
) -> None:
    settings = s3_settings(retention_hours=24)  # the grace is then ORPHAN_GRACE, 10 minutes
    world = World(session, now)
    job = world.job()
    live = world.artifact(stored.artifact(job.id), YOUNG, job=job)
    stray = stored.artifact(job.id, "stray.tflite", 400)  # beside a live artifact: goes alone
    stored.tfjs(900)  # artifacts/900: a finished job nobody points to any more
    orphan_upload = stored.upload("lost.pb", 200)
    dead_job = world.job()
    dead = world.artifact(stored.artifact(dead_job.id, size=300), YOUNG, job=dead_job)
    dead.deleted_at = now - OLD  # marked by an earlier pass, its object left behind
    session.flush()
    orphans = [stray, "artifacts/900", f"artifacts/{dead_job.id}", "/".join(orphan_upload.split("/")[:2])]

    assert run_storage_cleanup(session, settings, storage, now=now).removed == ()
    assert run_storage_cleanup(session, settings, storage, now=now + timedelta(minutes=9)).removed == ()
    report = run_storage_cleanup(session, settings, storage, now=now + timedelta(minutes=11))

    assert report.removed == tuple(sorted(orphans))
    assert report.freed_bytes == 400 + 1000 + 300 + 200
    assert report.expired_rows == 0
    assert stored.listed() == {live.path}


def test_an_unfinished_jobs_artifacts_folder_is_never_touched(
    session: Session, s3_settings: Any, storage: S3Storage, stored: Stored, now: datetime
) -> None:
    settings = s3_settings()
    world = World(session, now)
    writing = {stored.tfjs(world.job(status).id) for status in (JobStatus.QUEUED, JobStatus.RUNNING)}
    finished = stored.tfjs(world.job(JobStatus.SUCCEEDED).id)

    report = run_storage_cleanup(session, settings, storage, now=now + OLD)

    assert report.removed == ("/".join(finished.split("/")[:2]),)
    assert {"/".join(key.split("/")[:3]) for key in stored.listed()} == writing


def test_disk_cap_removes_the_least_recent_artifacts_first_until_under_it(
    session: Session, s3_settings: Any, storage: S3Storage, stored: Stored, now: datetime
) -> None:
    settings = s3_settings(retention_hours=24, max_disk_mb=100 * KB / (1024 * 1024))
    world = World(session, now)
    model = world.model(stored.upload(size=40 * KB), timedelta(hours=5))
    job_1, job_2, job_3 = world.job(), world.job(), world.job()
    first = world.artifact(stored.artifact(job_1.id, size=40 * KB), timedelta(hours=3), job=job_1)
    second = world.artifact(stored.artifact(job_2.id, size=40 * KB), timedelta(hours=3, seconds=1), job=job_2)
    third = world.artifact(stored.artifact(job_3.id, size=40 * KB), timedelta(hours=1), job=job_3)
    # 160 KB: two artifacts must go, the least recent two; the even older upload stays (artifacts first).

    report = run_storage_cleanup(session, settings, storage, now=now)

    assert report.removed == (second.path, first.path)
    assert report.freed_bytes == 80 * KB
    assert deleted(session, model, first, second, third) == [False, True, True, False]
    assert stored.listed() == {model.storage_path, third.path}


def test_disk_cap_then_uploads_but_never_a_busy_one(
    session: Session,
    s3_settings: Any,
    storage: S3Storage,
    stored: Stored,
    now: datetime,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = s3_settings(retention_hours=24, max_disk_mb=1 / 1024)  # 1 KB
    world = World(session, now)
    idle = world.model(stored.upload(size=5000), timedelta(hours=5))
    busy = world.model(stored.upload(size=5000), timedelta(hours=6))
    world.job(JobStatus.QUEUED, model=busy)
    job = world.job()
    artifact = world.artifact(stored.tfjs(job.id), timedelta(hours=1), job=job)

    with caplog.at_level(logging.WARNING, logger="jobs.storage_cleanup"):
        report = run_storage_cleanup(session, settings, storage, now=now)

    assert report.removed == (artifact.path, idle.storage_path)
    assert deleted(session, idle, busy, artifact) == [True, False, True]
    assert stored.listed() == {busy.storage_path}
    assert "still over its cap" in caplog.text


def test_dry_run_changes_nothing_and_reports_what_a_real_run_does(
    session: Session, s3_settings: Any, storage: S3Storage, stored: Stored, now: datetime
) -> None:
    settings = s3_settings(max_disk_mb=2.5 * KB / (1024 * 1024))
    world = World(session, now)
    job_1, job_2 = world.job(), world.job()
    records = [
        world.model(stored.upload(), OLD),  # expired
        world.artifact(stored.tfjs(job_1.id), YOUNG, job=job_1),  # 3000 bytes left: the less recent goes
        world.artifact(stored.artifact(job_2.id, size=2000), YOUNG / 2, job=job_2),  # then under the cap
    ]
    stored.artifact(900)  # an orphan
    session.commit()
    before = {(item.key, item.size, item.modified) for item in storage.list_files()}

    dry = run_storage_cleanup(session, settings, storage, now=now, dry_run=True)

    assert {(item.key, item.size, item.modified) for item in storage.list_files()} == before
    assert not session.dirty and not session.new
    assert deleted(session, *records) == [False, False, False]
    assert dry.dry_run
    assert dry.summary().startswith("dry run: would remove 3 files, free ")

    real = run_storage_cleanup(session, settings, storage, now=now)

    assert (real.removed, real.freed_bytes, real.expired_rows) == (dry.removed, dry.freed_bytes, dry.expired_rows)
    assert set(real.removed) == {records[0].storage_path, "artifacts/900", records[1].path}
    assert deleted(session, *records) == [True, True, False]


def test_a_record_whose_key_is_not_a_storage_key_is_left_alone(
    session: Session,
    s3_settings: Any,
    storage: S3Storage,
    stored: Stored,
    now: datetime,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = s3_settings()
    world = World(session, now)
    job = world.job()
    kept = world.artifact(stored.artifact(job.id), YOUNG, job=job)
    bad_keys = ["artifacts", f"artifacts/{job.id}/../{job.id}", "/srv/convbot/models/ab/m.pb", "tmp/job-1"]
    bad = [world.artifact(key, OLD, job=job) for key in bad_keys]
    expired = world.model(stored.upload(), OLD)

    with caplog.at_level(logging.WARNING, logger="jobs.storage_cleanup"):
        report = run_storage_cleanup(session, settings, storage, now=now)

    assert report.removed == (expired.storage_path,)  # the rest of the pass still runs
    assert deleted(session, *bad) == [False] * len(bad)
    assert stored.listed() == {kept.path}
    for key in bad_keys:
        assert f"holds {key!r}, not a storage key: left alone" in caplog.text


def test_run_cleanup_cleans_the_storage_and_only_the_local_temp_dirs(
    session: Session, s3_settings: Any, storage: S3Storage, stored: Stored, now: datetime
) -> None:
    settings = s3_settings()
    world = World(session, now)
    expired = world.artifact(stored.artifact(world.job().id), OLD)
    stale_tmp = write(settings.tmp_dir / "job-7" / "work" / "m.pb", 300).parent.parent
    busy = world.job(JobStatus.RUNNING)
    busy_tmp = write(settings.tmp_dir / f"job-{busy.id}" / "m.pb")
    local_file = write(settings.artifacts_dir / "3" / "m.tflite")  # not the storage: not this cleanup's

    report = run_cleanup(session, settings, now=now)

    assert report.removed == (expired.path, str(stale_tmp))
    assert report.freed_bytes == 100 + 300
    assert report.expired_rows == 1
    assert not storage.exists(expired.path) and not stale_tmp.exists()
    assert busy_tmp.exists() and local_file.exists()

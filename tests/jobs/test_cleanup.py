"""Cleanup on real files and a real database.

Retention is two seconds. The cleanup also looks at ctime (a file moved into place keeps its old
mtime), and ctime cannot be set back, so instead of ageing files the tests run the cleanup with a
clock a few seconds ahead (`now`); a "fresh" file gets its mtime set to that clock.

`session_factory` (tests/db_fixtures.py) runs every database test on SQLite and on PostgreSQL; its
SQLite file is outside the data dir, so the database never counts against the disk cap here.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

import jobs.cleanup as cleanup
from db.models import Artifact, Job, JobStatus, UploadedModel, User, utcnow
from jobs.cleanup import CleanupReport, run_cleanup, start_cleanup_scheduler
from jobs.settings import Settings

RETENTION = timedelta(seconds=2)
KB = 1024


@pytest.fixture
def session(session_factory: sessionmaker[Session]) -> Iterator[Session]:
    with session_factory() as session:
        yield session


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "retention_hours": RETENTION.total_seconds() / 3600,
        "cleanup_interval_minutes": 1 / 60,
        "max_disk_mb": 1000.0,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    for name in ("models", "artifacts", "tmp"):
        (root / name).mkdir(parents=True)
    # Stand-ins for the SQLite database: never touched.
    for name in ("convbot.db", "convbot.db-wal", "convbot.db-shm"):
        (root / name).write_bytes(b"db" * 50)
    return root


@pytest.fixture
def settings(data_dir: Path) -> Settings:
    return make_settings(data_dir)


@pytest.fixture
def now() -> datetime:
    """The cleanup's clock: five seconds ahead, so files written now are older than the grace."""
    return utcnow() + timedelta(seconds=5)


def write(path: Path, size: int = 100) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    return path


def make_fresh(path: Path, now: datetime) -> None:
    stamp = now.replace(tzinfo=UTC).timestamp()
    os.utime(path, (stamp, stamp), follow_symlinks=False)


def tfjs_folder(path: Path) -> Path:
    write(path / "model.json", 300)
    write(path / "group1-shard1of1.bin", 700)
    return path


def tree(root: Path) -> dict[str, bytes | str | None]:
    """Everything under `root`: file contents, link targets, None for directories."""
    found: dict[str, bytes | str | None] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(folder) / name
            key = str(path.relative_to(root))
            if path.is_symlink():
                found[key] = os.readlink(path)
            elif path.is_dir():
                found[key] = None
            else:
                found[key] = path.read_bytes()
    return found


class World:
    """Rows for the tests, with ages relative to the cleanup's clock."""

    def __init__(self, session: Session, now: datetime) -> None:
        self.session = session
        self.now = now
        self.user = User(telegram_id=1, name="ann")
        session.add(self.user)
        session.flush()
        self._model: UploadedModel | None = None

    def model(
        self, path: Path | str, age: timedelta = timedelta(0), expires_at: datetime | None = None
    ) -> UploadedModel:
        model = UploadedModel(
            user_id=self.user.id,
            sha256="ab" * 32,
            size=100,
            format="frozen",
            original_name=Path(path).name,
            storage_path=str(path),
            created_at=self.now - age,
            expires_at=expires_at,
        )
        self.session.add(model)
        self.session.flush()
        return model

    def job(
        self,
        status: JobStatus = JobStatus.SUCCEEDED,
        model: UploadedModel | None = None,
        calibration_key: str | None = None,
    ) -> Job:
        if model is None:
            if self._model is None:
                self._model = self.model("/nowhere/base.pb", timedelta(0))
            model = self._model
        job = Job(
            user_id=self.user.id,
            model_id=model.id,
            targets=["tflite"],
            inputs=[],
            outputs=[],
            shapes={},
            cache_key="k",
            calibration_key=calibration_key,
            status=status.value,
            created_at=self.now,
        )
        self.session.add(job)
        self.session.flush()
        return job

    def artifact(
        self,
        path: Path | str,
        age: timedelta = timedelta(0),
        expires_at: datetime | None = None,
        job: Job | None = None,
    ) -> Artifact:
        artifact = Artifact(
            job_id=(job or self.job()).id,
            kind="tflite",
            file_name=Path(path).name,
            path=str(path),
            size=100,
            sha256="cd" * 32,
            created_at=self.now - age,
            expires_at=expires_at,
        )
        self.session.add(artifact)
        self.session.flush()
        return artifact


def deleted(session: Session, *records: Artifact | UploadedModel) -> list[bool]:
    for record in records:
        session.refresh(record)
    return [record.deleted_at is not None for record in records]


OLD = timedelta(hours=1)
YOUNG = timedelta(seconds=1)


def test_retention_removes_exactly_the_expired_files_and_marks_their_rows(
    session: Session, settings: Settings, data_dir: Path, now: datetime
) -> None:
    world = World(session, now)
    models, artifacts = settings.models_dir, settings.artifacts_dir
    old_model = world.model(write(models / "ab" / "abab" / "old.pb", 1000), OLD)
    young_model = world.model(write(models / "cd" / "cdcd" / "young.pb"), YOUNG)
    old_file = world.artifact(write(artifacts / "1" / "m.tflite", 2000), timedelta(seconds=3))
    old_folder = world.artifact(tfjs_folder(artifacts / "1" / "tfjs"), OLD)
    young_file = world.artifact(write(artifacts / "2" / "m.tflite"), YOUNG)
    young_folder = world.artifact(tfjs_folder(artifacts / "2" / "tfjs"), YOUNG)
    # Young by age, but its own expiry has passed.
    early = world.artifact(write(artifacts / "3" / "m.tflite", 50), YOUNG, expires_at=now - timedelta(seconds=0.5))
    # Old, but the file is gone already: marked, nothing removed.
    gone = world.artifact(artifacts / "4" / "m.tflite", OLD)
    session.commit()
    database = tree(data_dir)

    report = run_cleanup(session, settings, now=now)

    expected = [models / "ab/abab/old.pb", artifacts / "1/m.tflite", artifacts / "1/tfjs", artifacts / "3/m.tflite"]
    assert report.removed == tuple(sorted(str(path) for path in expected))
    assert report.freed_bytes == 1000 + 2000 + 1000 + 50
    assert report.expired_rows == 5
    assert not report.dry_run
    assert deleted(session, old_model, old_file, old_folder, early, gone) == [True] * 5
    assert deleted(session, young_model, young_file, young_folder) == [False] * 3
    assert old_file.deleted_at == now
    for path in (young_model.storage_path, young_file.path, young_folder.path):
        assert Path(path).exists()
    assert (artifacts / "2" / "tfjs" / "group1-shard1of1.bin").exists()
    for name in ("convbot.db", "convbot.db-wal", "convbot.db-shm"):
        assert (data_dir / name).read_bytes() == database[name]
    assert report.summary() == "removed 4 files, freed 4.0 KB; 5 records marked expired"

    # Nothing commits: the caller owns the transaction.
    session.rollback()
    assert deleted(session, old_model) == [False]


def test_expires_at_later_than_retention_does_not_extend_it(
    session: Session, settings: Settings, now: datetime
) -> None:
    world = World(session, now)
    artifact = world.artifact(write(settings.artifacts_dir / "1" / "m.tflite"), OLD, expires_at=now + OLD)
    run_cleanup(session, settings, now=now)
    assert deleted(session, artifact) == [True]


def test_relative_paths_are_taken_from_the_data_dir(
    session: Session, settings: Settings, data_dir: Path, now: datetime
) -> None:
    world = World(session, now)
    write(data_dir / "artifacts" / "1" / "old.tflite")
    write(data_dir / "artifacts" / "1" / "live.tflite")
    old = world.artifact("artifacts/1/old.tflite", OLD)
    live = world.artifact("artifacts/1/live.tflite", YOUNG)

    report = run_cleanup(session, settings, now=now)

    assert report.removed == (str(data_dir / "artifacts" / "1" / "old.tflite"),)
    assert deleted(session, old, live) == [True, False]
    assert (data_dir / "artifacts" / "1" / "live.tflite").exists()  # not an orphan either


def test_dry_run_changes_nothing_and_reports_the_same_list(
    session: Session, settings: Settings, data_dir: Path, now: datetime
) -> None:
    world = World(session, now)
    records: list[Artifact | UploadedModel] = [
        world.model(write(settings.models_dir / "ab" / "abab" / "old.pb"), OLD),
        world.artifact(tfjs_folder(settings.artifacts_dir / "1" / "tfjs"), OLD),
        world.artifact(write(settings.artifacts_dir / "2" / "m.tflite"), YOUNG),
    ]
    write(settings.artifacts_dir / "9" / "orphan.tflite")
    write(settings.tmp_dir / "job-9" / "work.bin")
    before = tree(data_dir)

    dry = run_cleanup(session, settings, now=now, dry_run=True)

    assert tree(data_dir) == before
    assert not session.dirty and not session.new
    assert deleted(session, *records) == [False, False, False]
    assert dry.dry_run
    assert dry.summary().startswith("dry run: would remove 4 files, free ")

    real = run_cleanup(session, settings, now=now)

    assert real.removed == dry.removed
    assert real.freed_bytes == dry.freed_bytes
    assert real.expired_rows == dry.expired_rows == 2
    assert set(dry.removed) == {
        str(settings.models_dir / "ab" / "abab" / "old.pb"),
        str(settings.artifacts_dir / "1" / "tfjs"),
        str(settings.artifacts_dir / "9"),
        str(settings.tmp_dir / "job-9"),
    }


def test_rows_sharing_a_path_are_all_marked_and_the_file_removed_once(
    session: Session, settings: Settings, now: datetime
) -> None:
    world = World(session, now)
    shared = write(settings.artifacts_dir / "1" / "m.tflite", 500)
    original = world.artifact(shared, OLD, expires_at=now - OLD + RETENTION)
    cache_hit = world.artifact(shared, YOUNG, expires_at=original.expires_at)  # copies the original's expiry
    model_path = write(settings.models_dir / "ab" / "abab" / "m.pb", 300)
    uploads = [world.model(model_path, OLD), world.model(model_path, timedelta(seconds=3))]

    report = run_cleanup(session, settings, now=now)

    assert report.removed == (str(shared), str(model_path))  # sorted by path
    assert report.freed_bytes == 800
    assert report.expired_rows == 4
    assert deleted(session, original, cache_hit, *uploads) == [True] * 4


def test_a_younger_row_on_a_shared_path_keeps_the_file(session: Session, settings: Settings, now: datetime) -> None:
    world = World(session, now)
    shared = write(settings.artifacts_dir / "1" / "m.tflite")
    old = world.artifact(shared, OLD)
    young = world.artifact(shared, YOUNG)

    report = run_cleanup(session, settings, now=now)

    assert report.removed == ()
    assert shared.exists()
    assert deleted(session, old, young) == [False, False]


def test_orphans_are_removed_but_fresh_ones_and_running_jobs_kept(
    session: Session, settings: Settings, data_dir: Path, now: datetime
) -> None:
    world = World(session, now)
    models, artifacts = settings.models_dir, settings.artifacts_dir
    live = world.artifact(write(artifacts / "1" / "m.tflite"), YOUNG)
    old_orphan = write(artifacts / "1" / "stray.tflite", 400)
    orphan_dir = tfjs_folder(artifacts / "7")
    dead = world.artifact(write(artifacts / "8" / "m.tflite", 100), YOUNG)
    dead.deleted_at = now - OLD  # marked earlier, file left behind
    orphan_model_dir = write(models / "ef" / "efef" / "m.pb", 200).parent.parent
    fresh_orphan = write(artifacts / "1" / "writing.tflite")
    make_fresh(fresh_orphan, now)
    half_written = write(artifacts / "5" / "tfjs" / "group1-shard1of2.bin")  # an older file next to a fresh one
    make_fresh(write(artifacts / "5" / "tfjs" / "group1-shard2of2.bin"), now)
    running = world.job(JobStatus.RUNNING)
    running_out = write(artifacts / str(running.id) / "tfjs" / "model.json")
    session.flush()

    report = run_cleanup(session, settings, now=now)

    assert set(report.removed) == {str(old_orphan), str(orphan_dir), str(artifacts / "8"), str(models / "ef")}
    assert report.expired_rows == 0
    assert report.freed_bytes == 400 + 1000 + 100 + 200
    assert not old_orphan.exists() and not orphan_dir.exists() and not orphan_model_dir.exists()
    assert fresh_orphan.exists() and half_written.exists() and running_out.exists()
    assert Path(live.path).exists()
    assert (data_dir / "convbot.db").exists()
    assert models.is_dir() and artifacts.is_dir()


def test_orphan_grace_is_ten_minutes_under_a_long_retention(data_dir: Path, session: Session, now: datetime) -> None:
    settings = make_settings(data_dir, retention_hours=24)
    orphan = write(settings.artifacts_dir / "3" / "m.tflite")
    assert run_cleanup(session, settings, now=now).removed == ()
    assert run_cleanup(session, settings, now=now + timedelta(minutes=10)).removed == (str(orphan.parent),)


def test_stale_temp_dirs_are_removed(session: Session, settings: Settings, data_dir: Path, now: datetime) -> None:
    world = World(session, now)
    stale = write(settings.tmp_dir / "job-old" / "work" / "model.pb", 300).parent.parent
    stale_file = write(settings.tmp_dir / "upload-abc.part", 10)
    fresh = write(settings.tmp_dir / "job-new" / "model.pb")
    make_fresh(fresh, now)
    queued = world.job(JobStatus.QUEUED)
    waiting = write(settings.tmp_dir / f"job-{queued.id}" / "model.pb")

    report = run_cleanup(session, settings, now=now)

    assert report.removed == (str(stale), str(stale_file))
    assert report.freed_bytes == 310
    assert fresh.exists() and waiting.exists() and settings.tmp_dir.is_dir()

    long_retention = make_settings(data_dir, retention_hours=24)
    write(settings.tmp_dir / "job-3" / "model.pb")
    assert run_cleanup(session, long_retention, now=now + timedelta(minutes=59)).removed == ()
    removed = run_cleanup(session, long_retention, now=now + timedelta(minutes=61)).removed
    assert str(settings.tmp_dir / "job-3") in removed


def test_disk_cap_removes_oldest_artifacts_first_until_under_the_cap(
    session: Session, data_dir: Path, now: datetime
) -> None:
    # The three database stand-ins hold 300 bytes; the cap leaves room for them and two artifacts.
    settings = make_settings(data_dir, retention_hours=24, max_disk_mb=(300 + 100 * KB) / (1024 * 1024))
    world = World(session, now)
    model = world.model(write(settings.models_dir / "ab" / "abab" / "m.pb", 40 * KB), timedelta(hours=5))
    first = world.artifact(write(settings.artifacts_dir / "1" / "m.tflite", 40 * KB), timedelta(hours=3))
    second = world.artifact(tfjs_folder(settings.artifacts_dir / "2" / "tfjs"), timedelta(hours=3, seconds=1))
    write(settings.artifacts_dir / "2" / "tfjs" / "big.bin", 40 * KB - 1000)  # 40 KB in all
    third = world.artifact(write(settings.artifacts_dir / "3" / "m.tflite", 40 * KB), timedelta(hours=1))
    # 160 KB of files: two artifacts must go, the oldest two; the even older model stays (artifacts first).

    report = run_cleanup(session, settings, now=now)

    assert report.removed == (second.path, first.path)
    assert report.freed_bytes == 80 * KB
    assert report.expired_rows == 2
    assert deleted(session, model, first, second, third) == [False, True, True, False]
    assert Path(third.path).exists() and Path(model.storage_path).exists()


def test_disk_cap_then_models_but_never_the_database_or_a_busy_model(
    session: Session, data_dir: Path, now: datetime, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(data_dir, retention_hours=24, max_disk_mb=1 / 1024)  # 1 KB
    world = World(session, now)
    idle = world.model(write(settings.models_dir / "ab" / "abab" / "m.pb", 5000), timedelta(hours=5))
    busy = world.model(write(settings.models_dir / "cd" / "cdcd" / "m.pb", 5000), timedelta(hours=6))
    world.job(JobStatus.QUEUED, model=busy)
    artifact = world.artifact(write(settings.artifacts_dir / "1" / "m.tflite", 5000), timedelta(hours=1))
    database = tree(data_dir)

    with caplog.at_level(logging.WARNING, logger="jobs.cleanup"):
        report = run_cleanup(session, settings, now=now)

    assert report.removed == (artifact.path, idle.storage_path)
    assert deleted(session, idle, busy, artifact) == [True, False, True]
    assert Path(busy.storage_path).exists()
    for name in ("convbot.db", "convbot.db-wal", "convbot.db-shm"):
        assert (data_dir / name).read_bytes() == database[name]
    assert "still over its cap" in caplog.text


def test_a_busy_model_is_kept_past_its_retention(session: Session, settings: Settings, now: datetime) -> None:
    world = World(session, now)
    model = world.model(write(settings.models_dir / "ab" / "abab" / "m.pb"), OLD)
    world.job(JobStatus.RUNNING, model=model)
    assert run_cleanup(session, settings, now=now).removed == ()
    assert deleted(session, model) == [False]


def samples_key(digit: str, name: str = "samples.zip") -> str:
    """A key as the bot stores an int8 job's samples (jobs/storage.py: calibration_key)."""
    return f"calibration/{digit * 2}/{digit * 64}/{name}"


def test_int8_samples_go_with_their_job_and_never_outlive_the_model(
    session: Session, settings: Settings, data_dir: Path, now: datetime
) -> None:
    world = World(session, now)
    model = world.model(write(settings.models_dir / "ab" / "abab" / "m.pb"), OLD)
    done = samples_key("1")
    write(data_dir / done, 3000)
    world.job(JobStatus.SUCCEEDED, model=model, calibration_key=done)
    busy_model = world.model(write(settings.models_dir / "cd" / "cdcd" / "m.pb"), OLD)
    needed = samples_key("2")
    write(data_dir / needed, 3000)
    world.job(JobStatus.QUEUED, model=busy_model, calibration_key=needed)
    waiting = samples_key("3")  # stored by the bot, its job not submitted yet
    make_fresh(write(data_dir / waiting, 3000), now)
    forgotten = samples_key("4")  # stored, never submitted (the user sent /cancel)
    write(data_dir / forgotten, 3000)

    report = run_cleanup(session, settings, now=now)

    assert not (data_dir / done).exists() and not Path(model.storage_path).exists()
    assert (data_dir / needed).exists() and Path(busy_model.storage_path).exists()  # the queued job needs both
    assert (data_dir / waiting).exists() and not (data_dir / forgotten).exists()
    assert deleted(session, model, busy_model) == [True, False]
    assert str(data_dir / done) in report.removed


def test_int8_samples_go_as_soon_as_their_jobs_finish(
    session: Session, settings: Settings, data_dir: Path, now: datetime
) -> None:
    world = World(session, now)
    model = world.model(write(settings.models_dir / "ab" / "abab" / "m.pb"), YOUNG)
    shared = samples_key("5")
    make_fresh(write(data_dir / shared, 3000), now)
    first = world.job(JobStatus.FAILED, model=model, calibration_key=shared)
    second = world.job(JobStatus.RUNNING, model=model, calibration_key=shared)  # the same samples sent again

    assert run_cleanup(session, settings, now=now).removed == ()  # one job on them still runs
    second.status = JobStatus.SUCCEEDED.value
    session.flush()
    assert run_cleanup(session, settings, now=now).removed == (str(data_dir / shared),)
    assert Path(model.storage_path).exists() and first.status == JobStatus.FAILED.value


def test_symlinks_out_of_the_data_dir_are_removed_as_links_only(
    session: Session, settings: Settings, data_dir: Path, tmp_path: Path, now: datetime
) -> None:
    outside = tmp_path / "outside"
    secret = write(outside / "secret.txt", 10)
    secret_dir = tfjs_folder(outside / "secret_dir")
    secret_via_row = write(outside / "row_target.bin", 10)
    before = tree(outside)
    artifacts = settings.artifacts_dir
    world = World(session, now)
    live = world.artifact(write(artifacts / "1" / "m.tflite"), YOUNG)
    # Orphan links: to a file, to a directory, and one inside an orphan directory.
    (artifacts / "1" / "link.txt").symlink_to(secret)
    (artifacts / "linkdir").symlink_to(secret_dir, target_is_directory=True)
    (artifacts / "2").mkdir()
    (artifacts / "2" / "inner_link").symlink_to(secret_dir, target_is_directory=True)
    write(artifacts / "2" / "m.tflite")
    # An expired row whose file is a link out of the data dir.
    (artifacts / "3").mkdir()
    (artifacts / "3" / "m.tflite").symlink_to(secret_via_row)
    linked = world.artifact(artifacts / "3" / "m.tflite", OLD)
    # Expired rows pointing through a link, or outside the data dir: never deleted, rows still expire.
    through = world.artifact(artifacts / "linkdir" / "model.json", OLD)
    escaping = world.artifact("../outside/secret.txt", OLD)
    absolute = world.model(secret, OLD)
    database = world.model(data_dir / "convbot.db", OLD)

    report = run_cleanup(session, settings, now=now)

    assert tree(outside) == before
    assert set(report.removed) == {
        str(artifacts / "1" / "link.txt"),
        str(artifacts / "linkdir"),
        str(artifacts / "2"),
        str(artifacts / "3" / "m.tflite"),
    }
    for path in report.removed:
        assert not os.path.lexists(path)
    assert deleted(session, linked, through, escaping, absolute, database) == [True] * 5
    assert (data_dir / "convbot.db").exists()
    assert Path(live.path).exists()


def test_a_symlinked_artifacts_dir_is_not_swept(
    session: Session, data_dir: Path, tmp_path: Path, now: datetime
) -> None:
    elsewhere = tmp_path / "elsewhere"
    stray = write(elsewhere / "1" / "m.tflite")
    (data_dir / "artifacts").rmdir()
    (data_dir / "artifacts").symlink_to(elsewhere, target_is_directory=True)
    settings = make_settings(data_dir)
    world = World(session, now)
    row = world.artifact(data_dir / "artifacts" / "1" / "m.tflite", OLD)

    report = run_cleanup(session, settings, now=now)

    assert report.removed == ()
    assert stray.exists()
    assert deleted(session, row) == [True]


def test_summary() -> None:
    assert CleanupReport((), 0, 0, False).summary() == "removed 0 files, freed 0 B; 0 records marked expired"
    report = CleanupReport(("a",), int(12.4 * 1024 * 1024), 1, False)
    assert report.summary() == "removed 1 file, freed 12.4 MB; 1 record marked expired"
    assert CleanupReport(("a", "b"), 3 * 1024**3, 2, True).summary() == (
        "dry run: would remove 2 files, free 3.0 GB; 2 records would be marked expired"
    )


def test_an_aware_now_is_taken_as_utc(session: Session, settings: Settings, now: datetime) -> None:
    world = World(session, now)
    artifact = world.artifact(write(settings.artifacts_dir / "1" / "m.tflite"), OLD)
    run_cleanup(session, settings, now=now.replace(tzinfo=UTC).astimezone(timezone_plus_two()))
    assert deleted(session, artifact) == [True]
    assert artifact.deleted_at == now


def timezone_plus_two() -> Any:
    from datetime import timezone

    return timezone(timedelta(hours=2))


def wait_for(condition: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return bool(condition())


def test_scheduler_runs_every_interval_and_removes_an_expired_file(
    session_factory: sessionmaker[Session], settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    with session_factory() as session:
        world = World(session, utcnow())
        path = write(settings.artifacts_dir / "1" / "m.tflite")
        artifact_id = world.artifact(path, OLD).id
        session.commit()
    reports: list[CleanupReport] = []
    real_run = cleanup.run_cleanup

    def counting(*args: Any, **kwargs: Any) -> CleanupReport:
        report = real_run(*args, **kwargs)
        reports.append(report)
        return report

    monkeypatch.setattr(cleanup, "run_cleanup", counting)
    started = time.monotonic()
    scheduler = start_cleanup_scheduler(settings, session_factory)
    try:
        assert wait_for(lambda: len(reports) >= 2, timeout=3.5)
    finally:
        scheduler.shutdown(wait=True)
    assert time.monotonic() - started < 3.5
    assert not path.exists()
    assert reports[0].removed == (str(path),)
    with session_factory() as session:
        artifact = session.get(Artifact, artifact_id)
        assert artifact is not None and artifact.deleted_at is not None  # committed by the tick


def test_scheduler_survives_a_failing_cleanup(
    session_factory: sessionmaker[Session],
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[str] = []

    def failing(*args: Any, **kwargs: Any) -> CleanupReport:
        calls.append(threading.current_thread().name)
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(cleanup, "run_cleanup", failing)
    with caplog.at_level(logging.ERROR, logger="jobs.cleanup"):
        scheduler = start_cleanup_scheduler(settings, session_factory)
        try:
            assert wait_for(lambda: len(calls) >= 2, timeout=3.5)
            assert scheduler.running
        finally:
            scheduler.shutdown(wait=True)
    errors = [record for record in caplog.records if record.name == "jobs.cleanup"]
    assert errors and errors[0].exc_info is not None
    assert "disk on fire" in caplog.text
    with session_factory() as session:
        assert session.scalars(select(Artifact)).all() == []

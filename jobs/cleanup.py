"""Disk cleanup: expire old uploads and artifacts, sweep orphans and stale temp dirs, keep the
data dir under its size cap. An int8 job's samples (calibration/) stay only while an unfinished job needs them.

`run_cleanup` takes the caller's session and never commits: the caller owns the transaction.
`start_cleanup_scheduler` runs it periodically, each tick in its own session, committed there.

Safety rules, whatever the database says:
- nothing outside the data dir is ever deleted: a path is only removed if its parent directory
  resolves (symlinks followed) to a place inside the data dir; the path itself is never followed,
  so a symlink is removed as a link and its target is left alone;
- directories are never descended through symlinks (walks use lstat, `shutil.rmtree` does not
  follow links);
- the data dir itself, its `models`, `artifacts` and `tmp` dirs and the SQLite database
  (`convbot.db` and its `-wal`, `-shm`, `-journal`, `-lock` files) are never removed.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from converter.units import format_size
from db.models import Artifact, Job, JobStatus, UploadedModel, utcnow
from jobs.settings import Settings
from jobs.storage import CALIBRATION, checked_key, storage_from_settings

logger = logging.getLogger(__name__)

# A file nobody points to may be one a job is writing right now: leave it this long.
ORPHAN_GRACE = timedelta(minutes=10)
# A temp dir belongs to a running job until well past any sane job time.
TMP_GRACE = timedelta(hours=1)
# Jobs whose model (and artifacts) must stay on disk whatever their age.
ACTIVE_JOB_STATUSES = (JobStatus.QUEUED.value, JobStatus.RUNNING.value, JobStatus.INTERRUPTED.value)
SQLITE_SUFFIXES = ("", "-wal", "-shm", "-journal", "-lock")  # -lock: db/sqlite_file.py

Record = Artifact | UploadedModel


@dataclass(frozen=True)
class CleanupReport:
    removed: tuple[str, ...]  # paths deleted (or that would be, in a dry run)
    freed_bytes: int
    expired_rows: int  # artifact + model rows marked deleted
    dry_run: bool

    def summary(self) -> str:
        files = _plural(len(self.removed), "file")
        rows = _plural(self.expired_rows, "record")
        size = format_size(self.freed_bytes)
        if self.dry_run:
            return f"dry run: would remove {files}, free {size}; {rows} would be marked expired"
        return f"removed {files}, freed {size}; {rows} marked expired"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


@dataclass
class _Removal:
    path: Path
    size: int
    records: list[Record] = field(default_factory=list)


class _Cleaner:
    """One cleanup pass: plans every removal first (so a dry run sees exactly what a real run
    would do), then applies the plan."""

    def __init__(self, session: Session, settings: Settings, now: datetime) -> None:
        self.session = session
        self.now = now  # naive UTC, like the database
        self.now_ts = now.replace(tzinfo=UTC).timestamp()
        retention = timedelta(hours=settings.retention_hours)
        self.retention = retention
        self.orphan_grace = min(ORPHAN_GRACE, retention)
        self.tmp_grace = min(max(TMP_GRACE, timedelta(seconds=settings.job_timeout_seconds)), retention)
        self.cap_bytes = int(settings.max_disk_mb * 1024 * 1024)

        self.root = Path(os.path.realpath(settings.data_dir))
        self.models_dir = self.root / "models"
        self.artifacts_dir = self.root / "artifacts"
        self.tmp_dir = self.root / "tmp"
        self.calibration_dir = self.root / CALIBRATION
        self.reserved = {self.root, self.models_dir, self.artifacts_dir, self.tmp_dir, self.calibration_dir}
        self.protected = {self.root / f"convbot.db{suffix}" for suffix in SQLITE_SUFFIXES}
        database = _sqlite_file(settings.sqlalchemy_url)
        if database is not None:
            self.protected |= {_canonical(Path(f"{database}{suffix}")) for suffix in SQLITE_SUFFIXES}

        self.plan: list[_Removal] = []
        self.planned: set[Path] = set()

    # -- paths --------------------------------------------------------------------------------

    def key(self, raw: str) -> Path:
        """The path a record points to, relative paths taken from the data dir, its parent
        resolved but not its last part (a symlink stays the link)."""
        path = Path(raw)
        if not path.is_absolute():
            path = self.root / path
        return _canonical(path)

    def removable(self, path: Path) -> bool:
        """True if `path` may be deleted: strictly inside the data dir, not reserved, not the database."""
        if path in self.reserved or self.root not in path.parents:
            return False
        return not any(item.is_relative_to(path) for item in self.protected)

    # -- planning ------------------------------------------------------------------------------

    def add(self, path: Path, size: int, records: Iterable[Record] = ()) -> None:
        self.plan.append(_Removal(path, size, list(records)))
        self.planned.add(path)

    def mark_only(self, records: Iterable[Record]) -> None:
        """Records to mark deleted whose file is gone already or must not be touched."""
        self.plan.append(_Removal(Path(), 0, list(records)))

    def live_records(self) -> dict[Path, list[Record]]:
        """Every record not yet deleted, by the path it points to."""
        by_path: dict[Path, list[Record]] = {}
        artifacts = self.session.scalars(select(Artifact).where(Artifact.deleted_at.is_(None)))
        models = self.session.scalars(select(UploadedModel).where(UploadedModel.deleted_at.is_(None)))
        for artifact in artifacts:
            by_path.setdefault(self.key(artifact.path), []).append(artifact)
        for model in models:
            by_path.setdefault(self.key(model.storage_path), []).append(model)
        return by_path

    def plan_expired(self, by_path: dict[Path, list[Record]], busy: set[Path]) -> None:
        """A path expires once every live record on it has: a cache hit keeps shared files alive."""
        expired = {
            path
            for path, records in by_path.items()
            if path not in busy and all(expiry(record, self.retention) <= self.now for record in records)
        }
        kept_ancestors = _ancestors(path for path in by_path if path not in expired)
        for path in sorted(expired):
            records = by_path[path]
            if path in kept_ancestors:  # a folder holding a file another live record points to
                continue
            if not self.removable(path):
                logger.warning("expired record points outside the data dir, file left alone: %s", path)
                self.mark_only(records)
                continue
            size, _ = _tree_stats(path)
            if size is None:  # already gone
                self.mark_only(records)
            else:
                self.add(path, size, records)

    def plan_used_samples(self, used: Iterable[Path]) -> None:
        """The samples of int8 jobs that have all finished: they go now, whatever their age."""
        for path in sorted(used):
            size, _ = _tree_stats(path)
            if size is not None and self.removable(path) and path not in self.planned:
                self.add(path, size)

    def plan_orphans(self, live: set[Path]) -> None:
        """Anything under models/, artifacts/ and calibration/ no live record (or unfinished job) points to,
        once older than the grace."""
        keep = live | self.protected
        ancestors = _ancestors(keep | self.planned)
        for top in (self.models_dir, self.artifacts_dir, self.calibration_dir):
            if not _is_real_dir(top):
                if os.path.lexists(top):
                    logger.warning("%s is not a real directory inside the data dir; not swept", top)
                continue
            self._sweep(top, keep, ancestors, self.orphan_grace)

    def _sweep(self, directory: Path, keep: set[Path], ancestors: set[Path], grace: timedelta) -> None:
        for entry in _scandir(directory):
            path = directory / entry.name
            if path in keep or path in self.planned:
                continue
            if path in ancestors and entry.is_dir(follow_symlinks=False):
                self._sweep(path, keep, ancestors, grace)
                continue
            self._add_if_old(path, grace)

    def _add_if_old(self, path: Path, grace: timedelta) -> None:
        size, newest = _tree_stats(path)
        if size is None or newest is None or not self.removable(path):
            return
        if self.now_ts - newest >= grace.total_seconds():
            self.add(path, size)

    def plan_tmp(self, working: set[Path]) -> None:
        """Temp dirs (and files) of jobs long finished or killed."""
        if not _is_real_dir(self.tmp_dir):
            return
        for entry in _scandir(self.tmp_dir):
            path = self.tmp_dir / entry.name
            if path not in self.planned and path not in working:
                self._add_if_old(path, self.tmp_grace)

    def plan_disk_cap(self, by_path: dict[Path, list[Record]], busy: set[Path]) -> None:
        """Over the cap: drop live artifacts, least recently created first, then uploaded models."""
        total = _tree_stats(self.root)[0] or 0
        total -= sum(removal.size for removal in self.plan)
        if total <= self.cap_bytes:
            return
        candidates: list[tuple[int, datetime, Path]] = []
        nesting = _ancestors(by_path)
        for path, records in by_path.items():
            if path in self.planned or path in busy or path in nesting or not self.removable(path):
                continue
            tier = 0 if all(isinstance(record, Artifact) for record in records) else 1
            candidates.append((tier, max(record.created_at for record in records), path))
        for _, _, path in sorted(candidates):
            if total <= self.cap_bytes:
                break
            size, _ = _tree_stats(path)
            if size is None:
                continue  # a missing file frees nothing; its records stay as they are
            self.add(path, size, by_path[path])
            total -= size
        if total > self.cap_bytes:
            logger.warning(
                "data dir still over its cap after cleanup: %s > %s", format_size(total), format_size(self.cap_bytes)
            )

    # -- applying -------------------------------------------------------------------------------

    def apply(self, dry_run: bool) -> CleanupReport:
        removed: list[str] = []
        freed = 0
        marked = 0
        for removal in self.plan:
            if removal.path != Path():
                if not dry_run:
                    try:
                        _remove(removal.path)
                    except FileNotFoundError:
                        removal.size = 0
                    except OSError:
                        logger.exception("could not remove %s; its records stay live", removal.path)
                        continue
                    logger.info("removed %s (%s)", removal.path, format_size(removal.size))
                removed.append(str(removal.path))
                freed += removal.size
            marked += mark_deleted(removal.records, self.now, dry_run)
        if not dry_run:
            self.session.flush()
        return CleanupReport(removed=tuple(removed), freed_bytes=freed, expired_rows=marked, dry_run=dry_run)


def run_cleanup(
    session: Session, settings: Settings, *, now: datetime | None = None, dry_run: bool = False
) -> CleanupReport:
    """One cleanup pass. Marks records deleted in `session` (flushed, never committed) and deletes
    files; with `dry_run` reports the same removals without changing files or records."""
    if now is None:
        now = utcnow()
    elif now.tzinfo is not None:
        now = now.astimezone(UTC).replace(tzinfo=None)
    if settings.storage_url:
        return _clean_storage_and_local_tmp(session, settings, now, dry_run)
    cleaner = _Cleaner(session, settings, now)

    by_path = cleaner.live_records()
    busy_models, busy_jobs = in_use(session)
    busy = {
        path
        for path, records in by_path.items()
        for record in records
        if (isinstance(record, UploadedModel) and record.id in busy_models)
        or (isinstance(record, Artifact) and record.job_id in busy_jobs)
    }

    needed_samples, used_samples = samples_in_use(session)
    cleaner.plan_used_samples(cleaner.key(key) for key in used_samples)
    cleaner.plan_expired(by_path, busy)
    live = {path for path in by_path if path not in cleaner.planned}
    live.difference_update(  # records marked without removing a file (outside the data dir, gone)
        cleaner.key(_record_path(record)) for removal in cleaner.plan for record in removal.records
    )
    live |= busy
    # Unfinished jobs write into these (see jobs/service.py) before any record exists.
    working = {cleaner.artifacts_dir / str(job_id) for job_id in busy_jobs}
    working |= {cleaner.tmp_dir / f"job-{job_id}" for job_id in busy_jobs}
    working |= {cleaner.key(key) for key in needed_samples}
    cleaner.plan_orphans(live | working)
    cleaner.plan_tmp(working)
    cleaner.plan_disk_cap({path: by_path[path] for path in live if path in by_path}, busy)
    return cleaner.apply(dry_run)


def _clean_storage_and_local_tmp(session: Session, settings: Settings, now: datetime, dry_run: bool) -> CleanupReport:
    """Uploads and artifacts live in CONVBOT_STORAGE_URL: clean them there; only temp dirs stay local."""
    from jobs.storage_cleanup import run_storage_cleanup  # here: jobs.storage_cleanup builds on this module

    stored = run_storage_cleanup(session, settings, storage_from_settings(settings), now=now, dry_run=dry_run)
    local = _sweep_tmp(session, settings, now, dry_run)
    return CleanupReport(
        removed=stored.removed + local.removed,
        freed_bytes=stored.freed_bytes + local.freed_bytes,
        expired_rows=stored.expired_rows + local.expired_rows,
        dry_run=dry_run,
    )


def _sweep_tmp(session: Session, settings: Settings, now: datetime, dry_run: bool) -> CleanupReport:
    """Only the stale temp dirs of the local data dir: the folder cleaner's tmp rule on its own."""
    cleaner = _Cleaner(session, settings, now)
    _, busy_jobs = in_use(session)
    cleaner.plan_tmp({cleaner.tmp_dir / f"job-{job_id}" for job_id in busy_jobs})
    return cleaner.apply(dry_run)


def start_cleanup_scheduler(settings: Settings, session_factory: sessionmaker[Session]) -> BackgroundScheduler:
    """Start a background scheduler running one cleanup now and then every
    `cleanup_interval_minutes`, each in its own session; call `.shutdown()` to stop it."""
    scheduler = BackgroundScheduler(timezone=UTC)
    scheduler.add_job(
        _cleanup_tick,
        "interval",
        seconds=settings.cleanup_interval_minutes * 60,
        args=(settings, session_factory),
        id="convbot-cleanup",
        name="convbot cleanup",
        next_run_time=datetime.now(UTC),  # clean once at start: a bot restarted often still cleans
        max_instances=1,
        coalesce=True,
        misfire_grace_time=None,  # a late tick (a busy machine) still runs
    )
    scheduler.start()
    return scheduler


def _cleanup_tick(settings: Settings, session_factory: sessionmaker[Session]) -> None:
    """One scheduled cleanup; never raises, so no failure can stop the schedule."""
    try:
        with session_factory() as session:
            try:
                report = run_cleanup(session, settings)
                session.commit()
            except BaseException:
                session.rollback()
                raise
        if report.removed or report.expired_rows:
            logger.info("cleanup: %s", report.summary())
        else:
            logger.debug("cleanup: nothing to do")
    except Exception:
        logger.exception("cleanup failed; trying again at the next tick")


def mark_deleted(records: Iterable[Record], now: datetime, dry_run: bool) -> int:
    """Mark the records whose file is removed (none in a dry run); how many are, or would be, marked."""
    marked = 0
    for record in records:
        if record.deleted_at is None:
            if not dry_run:
                record.deleted_at = now
            marked += 1
    return marked


def in_use(session: Session) -> tuple[set[int], set[int]]:
    """Model ids and job ids of jobs still queued, running or to be re-queued: their files stay."""
    rows = session.execute(select(Job.id, Job.model_id).where(Job.status.in_(ACTIVE_JOB_STATUSES))).all()
    return {model_id for _, model_id in rows}, {job_id for job_id, _ in rows}


def samples_in_use(session: Session) -> tuple[set[str], set[str]]:
    """The storage keys of int8 jobs' samples: (those an unfinished job still needs, those only finished jobs
    used). Samples serve one conversion: once every job on them has finished they go, and so never outlive the
    model they calibrated (a model stays while a job on it is unfinished). Keys outside calibration/ are ignored."""
    rows = session.execute(select(Job.calibration_key, Job.status).where(Job.calibration_key.is_not(None))).all()
    keys = [(key, status) for key, status in rows if key is not None and _is_samples_key(key)]
    needed = {key for key, status in keys if status in ACTIVE_JOB_STATUSES}
    return needed, {key for key, _ in keys} - needed


def _is_samples_key(key: str) -> bool:
    try:
        return checked_key(key).startswith(f"{CALIBRATION}/")
    except ValueError:
        logger.warning("a job's calibration key %r is not a storage key: left alone", key)
        return False


def expiry(record: Record, retention: timedelta) -> datetime:
    """When a record's file expires: its own expiry, or the retention after it was made, whichever is first."""
    deadline = record.created_at + retention
    if record.expires_at is not None and record.expires_at < deadline:
        return record.expires_at
    return deadline


# -- file helpers -------------------------------------------------------------------------------


def _record_path(record: Record) -> str:
    return record.path if isinstance(record, Artifact) else record.storage_path


def _ancestors(paths: Iterable[Path]) -> set[Path]:
    return {parent for path in paths for parent in path.parents}


def _canonical(path: Path) -> Path:
    path = Path(os.path.normpath(path))
    if path.name in ("", ".", ".."):
        return Path(os.path.realpath(path))
    return Path(os.path.realpath(path.parent)) / path.name


def _sqlite_file(url: str) -> Path | None:
    try:
        parsed = make_url(url)
    except Exception:
        return None
    if not parsed.drivername.startswith("sqlite") or not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database).absolute()


def _is_real_dir(path: Path) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def _scandir(directory: Path) -> Iterator[os.DirEntry[str]]:
    try:
        with os.scandir(directory) as entries:
            yield from sorted(entries, key=lambda entry: entry.name)
    except (FileNotFoundError, NotADirectoryError):
        return


def _tree_stats(path: Path) -> tuple[int | None, float | None]:
    """(bytes in regular files, newest mtime or ctime) of `path` and, for a real directory,
    everything under it, symlinks never followed; (None, None) if `path` does not exist."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None, None
    size = info.st_size if stat.S_ISREG(info.st_mode) else 0
    newest = max(info.st_mtime, info.st_ctime)  # ctime: a file moved into place keeps an old mtime
    if stat.S_ISDIR(info.st_mode):
        pending = [path]
        while pending:
            for entry in _scandir(pending.pop()):
                try:
                    child = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if stat.S_ISREG(child.st_mode):
                    size += child.st_size
                elif stat.S_ISDIR(child.st_mode):
                    pending.append(Path(entry.path))
                newest = max(newest, child.st_mtime, child.st_ctime)
    return size, newest


def _remove(path: Path) -> None:
    """Delete a file, a link (never its target) or a whole directory tree (links inside unfollowed)."""
    if stat.S_ISDIR(os.lstat(path).st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)

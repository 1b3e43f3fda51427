"""Cleanup of uploads and artifacts kept in a Storage (an S3 bucket): the policy of jobs/cleanup.py, by key.

Records hold keys (`models/ab/abab.../pose.pb`, `artifacts/12/pose_tfjs`, a folder). One pass lists the
storage once and plans every removal from that listing (so a dry run reports exactly what a real run would
do), then applies the plan:
- expiry: a key goes once every live record on it has expired, never while a queued, running or interrupted
  job uses it (its model, or an artifact of it);
- orphans: objects no live record points to, once the newest object of their group is older than the grace;
  `artifacts/<job_id>/` of an unfinished job is never touched (a worker may be writing there);
- the disk cap: over CONVBOT_MAX_DISK_MB in all, live artifacts go first, least recently created, then uploads;
- int8 samples (`calibration/...`): kept while an unfinished job needs them, removed once all their jobs finished.

Safety rules, whatever the database says: a record's key is used only if `checked_key` accepts it (else the
record is left alone, with a warning); a key that holds, or lies inside, a key still kept is never deleted;
orphans are deleted object by object, as listed, so an object written after the listing is never removed.
`run_storage_cleanup` marks records in the caller's session (flushed, never committed).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from converter.units import format_size
from db.models import Artifact, UploadedModel, utcnow
from jobs.cleanup import ORPHAN_GRACE, CleanupReport, Record, expiry, in_use, mark_deleted, samples_in_use
from jobs.settings import Settings
from jobs.storage import ARTIFACTS, Storage, StorageError, StoredFile, checked_key

logger = logging.getLogger(__name__)


@dataclass
class _Removal:
    key: str  # "" when records are only marked
    size: int
    objects: list[str] | None = None  # None: the whole key (its file and its folder); else exactly these
    records: list[Record] = field(default_factory=list)


def _record_key(record: Record) -> str:
    return record.path if isinstance(record, Artifact) else record.storage_path


def _under(key: str, prefix: str) -> bool:
    """True if `key` is `prefix` itself or lies in the folder `prefix`."""
    return key == prefix or key.startswith(prefix + "/")


def _prefixes(key: str) -> list[str]:
    """The folders `key` lies in, shortest first: `artifacts/1/tfjs` -> `artifacts`, `artifacts/1`."""
    parts = key.split("/")
    return ["/".join(parts[:end]) for end in range(1, len(parts))]


def _ancestors(keys: Iterable[str]) -> set[str]:
    return {prefix for key in keys for prefix in _prefixes(key)}


def _overlaps_any(key: str, keys: set[str], ancestors: set[str]) -> bool:
    """True if `key` is one of `keys`, lies inside one, or holds one (`ancestors`: `_ancestors(keys)`)."""
    return key in keys or key in ancestors or any(prefix in keys for prefix in _prefixes(key))


def _orphan_group(key: str, blocked: set[str]) -> str:
    """The shortest key (at least `area/name`) holding `key` that is not a folder of a kept or planned key."""
    return next(prefix for prefix in [*_prefixes(key)[1:], key] if prefix not in blocked)


class _StorageCleaner:
    """One cleanup pass over one listing of the storage: plans every removal first, then applies the plan."""

    def __init__(self, session: Session, settings: Settings, storage: Storage, now: datetime) -> None:
        self.session = session
        self.storage = storage
        self.now = now  # naive UTC, like the database
        self.retention = timedelta(hours=settings.retention_hours)
        self.orphan_grace = min(ORPHAN_GRACE, self.retention)
        self.cap_bytes = int(settings.max_disk_mb * 1024 * 1024)
        self.files = storage.list_files()
        self.stored: dict[str, list[StoredFile]] = {}  # by key: the object itself, or the objects of the folder
        for stored in self.files:
            for key in [*_prefixes(stored.key), stored.key]:
                self.stored.setdefault(key, []).append(stored)
        self.plan: list[_Removal] = []
        self.planned: set[str] = set()
        self.expired: set[str] = set()  # keys whose records are marked, removed or already gone

    # -- what the database says -------------------------------------------------------------------

    def live_records(self) -> dict[str, list[Record]]:
        """Every record not yet deleted whose key is a valid key, by key."""
        by_key: dict[str, list[Record]] = {}
        artifacts = self.session.scalars(select(Artifact).where(Artifact.deleted_at.is_(None)))
        models = self.session.scalars(select(UploadedModel).where(UploadedModel.deleted_at.is_(None)))
        for record in [*artifacts, *models]:
            raw = _record_key(record)
            try:
                key = checked_key(raw)
            except ValueError:
                logger.warning("%s %s holds %r, not a storage key: left alone", type(record).__name__, record.id, raw)
                continue
            by_key.setdefault(key, []).append(record)
        return by_key

    def size(self, key: str) -> int:
        return sum(stored.size for stored in self.stored.get(key, []))

    # -- planning --------------------------------------------------------------------------------

    def add(self, key: str, size: int, records: Iterable[Record] = (), objects: list[str] | None = None) -> None:
        self.plan.append(_Removal(key, size, objects, list(records)))
        self.planned.add(key)

    def plan_expired(self, by_key: dict[str, list[Record]], untouchable: set[str]) -> None:
        """A key expires once every live record on it has: a cache hit keeps shared files alive."""
        expired = {
            key
            for key, records in by_key.items()
            if key not in untouchable and all(expiry(record, self.retention) <= self.now for record in records)
        }
        kept = (set(by_key) - expired) | untouchable
        kept_ancestors = _ancestors(kept)
        for key in sorted(expired):
            if _overlaps_any(key, kept, kept_ancestors):  # a folder holding a kept file, or the reverse
                continue
            self.expired.add(key)
            size = self.size(key)
            if key in self.stored:
                self.add(key, size, by_key[key])
            else:  # gone already: only the records are marked
                self.plan.append(_Removal("", 0, None, by_key[key]))

    def plan_orphans(self, keep: set[str]) -> None:
        """Objects under no kept key, grouped under the shortest key that holds nothing kept or planned (as
        the folder cleanup removes the topmost such folder); a group goes once its newest object is older
        than the grace, so a folder still being filled is never half removed."""
        covered = keep | self.planned
        blocked = _ancestors(covered)
        groups: dict[str, list[StoredFile]] = {}
        for stored in self.files:
            if stored.key in covered or any(prefix in covered for prefix in _prefixes(stored.key)):
                continue
            if stored.key in blocked:  # also a folder holding a kept key: deleting the one deletes the other
                logger.warning("%s is both an object and a folder holding a kept key: left alone", stored.key)
                continue
            try:
                checked_key(stored.key)
            except ValueError:
                logger.warning("stored object %r is not a storage key: left alone", stored.key)
                continue
            groups.setdefault(_orphan_group(stored.key, blocked), []).append(stored)
        oldest_kept = self.now.replace(tzinfo=UTC) - self.orphan_grace
        for group, stored_files in sorted(groups.items()):
            if max(stored.modified for stored in stored_files) <= oldest_kept:
                size = sum(stored.size for stored in stored_files)
                self.add(group, size, objects=[stored.key for stored in stored_files])

    def plan_disk_cap(self, by_key: dict[str, list[Record]], untouchable: set[str]) -> None:
        """Over the cap: drop live artifacts, least recently created first, then uploaded models."""
        total = sum(stored.size for stored in self.files) - sum(removal.size for removal in self.plan)
        if total <= self.cap_bytes:
            return
        candidates: list[tuple[int, datetime, str]] = []
        nesting = _ancestors(by_key)
        for key, records in by_key.items():
            inside_another = any(prefix in by_key for prefix in _prefixes(key))
            if key in self.planned or key in untouchable or key in nesting or inside_another:
                continue
            tier = 0 if all(isinstance(record, Artifact) for record in records) else 1
            candidates.append((tier, max(record.created_at for record in records), key))
        for _, _, key in sorted(candidates):
            if total <= self.cap_bytes:
                break
            size = self.size(key)
            if size == 0:
                continue  # nothing stored frees nothing; its records stay as they are
            self.add(key, size, by_key[key])
            total -= size
        if total > self.cap_bytes:
            logger.warning(
                "storage %s still over its cap after cleanup: %s > %s",
                self.storage.location,
                format_size(total),
                format_size(self.cap_bytes),
            )

    # -- applying --------------------------------------------------------------------------------

    def apply(self, dry_run: bool) -> CleanupReport:
        removed: list[str] = []
        freed = 0
        marked = 0
        for removal in self.plan:
            if removal.key:
                if not dry_run:
                    try:
                        for key in removal.objects if removal.objects is not None else [removal.key]:
                            self.storage.delete(key)
                    except StorageError:
                        logger.exception("could not remove %s; its records stay live", removal.key)
                        continue
                    logger.info("removed %s (%s)", removal.key, format_size(removal.size))
                removed.append(removal.key)
                freed += removal.size
            marked += mark_deleted(removal.records, self.now, dry_run)
        if not dry_run:
            self.session.flush()
        return CleanupReport(removed=tuple(removed), freed_bytes=freed, expired_rows=marked, dry_run=dry_run)


def run_storage_cleanup(
    session: Session, settings: Settings, storage: Storage, *, now: datetime | None = None, dry_run: bool = False
) -> CleanupReport:
    """One cleanup pass over `storage`. Marks records deleted in `session` (flushed, never committed) and
    deletes objects; with `dry_run` reports the same removals without changing objects or records.
    `removed` holds keys."""
    if now is None:
        now = utcnow()
    elif now.tzinfo is not None:
        now = now.astimezone(UTC).replace(tzinfo=None)
    cleaner = _StorageCleaner(session, settings, storage, now)

    by_key = cleaner.live_records()
    busy_models, busy_jobs = in_use(session)
    busy = {
        key
        for key, records in by_key.items()
        for record in records
        if (isinstance(record, UploadedModel) and record.id in busy_models)
        or (isinstance(record, Artifact) and record.job_id in busy_jobs)
    }
    # Unfinished jobs write their artifacts here before any record exists.
    working = {f"{ARTIFACTS}/{job_id}" for job_id in busy_jobs}
    untouchable = busy | {
        key for key in by_key if any(_under(key, folder) or _under(folder, key) for folder in working)
    }

    needed_samples, used_samples = samples_in_use(session)
    for key in sorted(used_samples):  # every job on them has finished: they go now
        if key in cleaner.stored:
            cleaner.add(key, cleaner.size(key))
    cleaner.plan_expired(by_key, untouchable)
    live = {key: records for key, records in by_key.items() if key not in cleaner.expired}
    cleaner.plan_orphans(set(live) | working | needed_samples)
    cleaner.plan_disk_cap(live, untouchable)
    return cleaner.apply(dry_run)

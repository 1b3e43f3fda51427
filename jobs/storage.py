"""Where uploads and artifacts live: the data folder (`FolderStorage`, the default) or an S3-compatible
bucket (`S3Storage`), behind one small interface that uses the same keys for both.

A key is a relative, '/'-separated name built only here, from a content hash, a job id and sanitised
file names, so nothing a user typed can leave the storage's root:

    models/<sha[:2]>/<sha>/<name>    an upload, stored once per content hash (and name)
    artifacts/<job_id>/<name>        an artifact: one file, or a folder (a TF.js model) whose files
                                     are the objects under `<key>/`
    calibration/<sha[:2]>/<sha>/<name>  an int8 job's samples, kept only while a job that uses them is
                                     unfinished (jobs/cleanup.py)
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
import unicodedata
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from converter.result import sha256_file
from jobs.settings import Settings, parse_storage_url

if TYPE_CHECKING:
    from botocore.config import Config
    from types_boto3_s3.client import S3Client
    from types_boto3_s3.type_defs import ObjectIdentifierTypeDef

UPLOADS = "models"
ARTIFACTS = "artifacts"
CALIBRATION = "calibration"
AREAS = (UPLOADS, ARTIFACTS, CALIBRATION)
MAX_NAME_BYTES = 150  # well under the 255 bytes a file name may have on Linux file systems


@dataclass(frozen=True)
class Timeouts:
    connect_seconds: float
    read_seconds: float  # for one read from the socket, not for a whole transfer
    attempts: int  # the first try included


# check() answers within about 10 s even from an endpoint that accepts connections and never answers:
# 2 attempts of (connect 2 s + read 3 s), plus botocore's sub-second backoff.
CHECK_TIMEOUTS = Timeouts(connect_seconds=2.0, read_seconds=3.0, attempts=2)
# Transfers: a slow read is normal for a large object; a dead endpoint still fails in minutes, not hours.
TRANSFER_TIMEOUTS = Timeouts(connect_seconds=5.0, read_seconds=60.0, attempts=3)

_UNSAFE = re.compile(r"[^\w.\-]+")  # \w: letters and digits of any script, and '_'
_SEPARATORS = re.compile(r"[/\\]")
_CREDENTIALS_REFUSED = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "InvalidToken", "ExpiredToken"}
_WRONG_REGION = {"AuthorizationHeaderMalformed", "PermanentRedirect", "IllegalLocationConstraintException"}
_MISSING = {"404", "NoSuchKey", "NotFound"}


class StorageError(Exception):
    """Storage that cannot be used. The message is one line that starts with the setting at fault."""


@dataclass(frozen=True)
class StoredFile:
    """One file (S3: one object) in the storage."""

    key: str
    size: int  # bytes
    modified: datetime  # when it was written, timezone-aware UTC


def safe_name(name: str, default: str) -> str:
    """The last part of `name` (either separator) as a file name that is safe everywhere: letters, digits,
    '_', '-' and '.', never starting with a dot (so never '.' or '..'), at most MAX_NAME_BYTES long
    (the end is kept: it holds the extension); `default` when nothing is left."""
    last = _SEPARATORS.split(unicodedata.normalize("NFC", name))[-1]
    cleaned = _UNSAFE.sub("_", last)
    while len(cleaned.encode()) > MAX_NAME_BYTES:
        cleaned = cleaned[1:]
    if cleaned.startswith("."):
        cleaned = "_" + cleaned
    return cleaned or default


def upload_key(sha256: str, original_name: str) -> str:
    if not re.fullmatch(r"[0-9a-f]{64}", sha256):
        raise ValueError(f"not a SHA-256 hex digest: {sha256!r}")
    return f"{UPLOADS}/{sha256[:2]}/{sha256}/{safe_name(original_name, 'model')}"


def calibration_key(sha256: str, original_name: str) -> str:
    if not re.fullmatch(r"[0-9a-f]{64}", sha256):
        raise ValueError(f"not a SHA-256 hex digest: {sha256!r}")
    return f"{CALIBRATION}/{sha256[:2]}/{sha256}/{safe_name(original_name, 'samples')}"


def artifact_key(job_id: int, name: str) -> str:
    if isinstance(job_id, bool) or not isinstance(job_id, int) or job_id < 0:
        raise ValueError(f"not a job id: {job_id!r}")
    return f"{ARTIFACTS}/{job_id}/{safe_name(name, 'artifact')}"


def checked_key(key: str) -> str:
    """`key` if it stays inside the uploads, the artifacts (`artifacts/12` is the folder of job 12) or the
    calibration samples, else ValueError: a key read back from a database is never trusted to."""
    parts = key.split("/")
    if len(parts) < 2 or parts[0] not in AREAS or not all(map(_stays_inside, parts[1:])):
        raise ValueError(f"not a storage key: {key!r}")
    return key


def checked_relative(relative: str) -> str:
    """A path inside a folder artifact (written by a converter, or read back from a bucket), if it stays
    inside the folder, else ValueError."""
    if not all(map(_stays_inside, relative.split("/"))):
        raise ValueError(f"not a path inside a stored folder: {relative!r}")
    return relative


def _stays_inside(part: str) -> bool:
    """A file or folder name that cannot climb out or start from the root: not empty, '.' or '..', no
    backslash (a separator on Windows) and no NUL. Older uploads may hold spaces or other characters."""
    return part not in ("", ".", "..") and "\\" not in part and "\0" not in part


class Storage(ABC):
    """Uploads and artifacts by key. Writes of the same key by two workers at once leave one complete copy."""

    @property
    @abstractmethod
    def location(self) -> str:
        """Where the files are, for people: a folder or s3://bucket/prefix."""

    @abstractmethod
    def check(self) -> None:
        """Raise StorageError (one line naming the setting at fault) unless the storage can be used."""

    @abstractmethod
    def exists(self, key: str) -> bool:
        """True if `key` is a file, or a folder holding at least one file."""

    @abstractmethod
    def fetch(self, key: str, destination: Path) -> Path:
        """Copy the file or folder at `key` to the local `destination` (made, with its parents);
        FileNotFoundError when there is nothing at `key`."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the file or the whole folder at `key`; nothing there is not an error."""

    @abstractmethod
    def list_files(self, key: str = "") -> list[StoredFile]:
        """Every file of the storage (uploads, artifacts, samples, nothing else), or only those at `key`: the
        file itself or the files of the folder (`artifacts/1` does not include `artifacts/12`)."""

    @abstractmethod
    def _write_file(self, source: Path, key: str) -> None:
        """Store the local file `source` at `key`, replacing what was there."""

    def put_upload(self, source: Path, original_name: str) -> str:
        """Store an uploaded model once: the same bytes store nothing more, under any name with the same
        suffix (a few formats are recognised by it: a checkpoint's `.meta`). Returns its key."""
        digest = sha256_file(source)
        key = upload_key(digest, original_name)
        if self.exists(key):
            return key
        suffix = PurePosixPath(key).suffix
        for stored in self.list_files(f"{UPLOADS}/{digest[:2]}/{digest}"):
            if PurePosixPath(stored.key).suffix == suffix:
                return stored.key
        self._write_file(source, key)
        return key

    def put_calibration(self, source: Path, original_name: str) -> str:
        """Store an int8 job's samples once per content and name. Returns their key."""
        key = calibration_key(sha256_file(source), original_name)
        if not self.exists(key):
            self._write_file(source, key)
        return key

    def local_path(self, key: str, scratch: Path) -> Path:
        """A local file or folder holding what `key` holds, to read: fetched into the folder `scratch`
        (which the caller removes) unless the storage is on this disk already."""
        return self.fetch(key, scratch / PurePosixPath(key).name)

    def put_artifact(self, job_id: int, source: Path) -> str:
        """Store a job's artifact, a file or a folder, under the job id and `source`'s name. Returns its key."""
        key = artifact_key(job_id, source.name)
        if not _is_real_dir(source):
            self._write_file(source, key)
            return key
        for path, relative in _folder_files(source):
            self._write_file(path, f"{key}/{checked_relative(relative)}")
        return key


class FolderStorage(Storage):
    """The data folder: a key is a path under it."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def location(self) -> str:
        return str(self.root)

    def check(self) -> None:
        try:
            for area in (UPLOADS, ARTIFACTS):
                (self.root / area).mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StorageError(f"CONVBOT_DATA_DIR: cannot create {self.root}/{area}: {error.strerror}") from None
        if not os.access(self.root / UPLOADS, os.W_OK | os.X_OK):
            raise StorageError(f"CONVBOT_DATA_DIR: {self.root} is not writable by this user")

    def path(self, key: str) -> Path:
        """The local path of `key` (the local pool may read it in place)."""
        return self.root / checked_key(key)

    def local_path(self, key: str, scratch: Path) -> Path:
        path = self.path(key)
        if not os.path.lexists(path):
            raise FileNotFoundError(f"nothing stored at {key}")
        return path

    def exists(self, key: str) -> bool:
        path = self.path(key)
        return _is_regular_file(path) or next(_folder_files(path), None) is not None

    def fetch(self, key: str, destination: Path) -> Path:
        path = self.path(key)
        if _is_regular_file(path):
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, destination)
            return destination
        files = list(_folder_files(path))
        if not files:
            raise FileNotFoundError(f"nothing stored at {key}")
        for source, relative in files:
            target = destination / checked_relative(relative)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
        return destination

    def delete(self, key: str) -> None:
        path = self.path(key)
        try:
            if _is_real_dir(path):
                shutil.rmtree(path)  # never follows a link inside
            else:
                os.unlink(path)  # a link is removed as a link
        except FileNotFoundError:
            pass

    def list_files(self, key: str = "") -> list[StoredFile]:
        tops = [self.path(key)] if key else [self.root / area for area in AREAS]
        found = []
        for top in tops:
            paths = [top] if _is_regular_file(top) else [path for path, _ in _folder_files(top)]
            for path in paths:
                info = os.lstat(path)
                stored = path.relative_to(self.root).as_posix()
                found.append(StoredFile(stored, info.st_size, datetime.fromtimestamp(info.st_mtime, UTC)))
        return found

    def put_artifact(self, job_id: int, source: Path) -> str:
        # The local pool writes artifacts straight into artifacts/<job_id>/: those are stored already.
        key = artifact_key(job_id, source.name)
        if source.absolute() == self.path(key).absolute():
            return key
        return super().put_artifact(job_id, source)

    def _write_file(self, source: Path, key: str) -> None:
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        # Copy beside the target, then rename: a reader never sees half a file.
        handle, partial = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
        os.close(handle)
        try:
            shutil.copyfile(source, partial)
            os.replace(partial, target)
        except BaseException:
            Path(partial).unlink(missing_ok=True)
            raise


class S3Storage(Storage):
    """An S3-compatible bucket (AWS, SeaweedFS, MinIO, Ceph): a key is an object name under the prefix.
    Credentials and region are boto3's own: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION."""

    def __init__(self, bucket: str, prefix: str = "", endpoint_url: str = "") -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint_url = endpoint_url
        with self._explained():  # a bad AWS_DEFAULT_REGION is refused here
            self._client = self._make_client(TRANSFER_TIMEOUTS)

    @property
    def location(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    @property
    def _endpoint(self) -> str:
        return self.endpoint_url or "AWS S3"

    def check(self) -> None:
        probe = self._make_client(CHECK_TIMEOUTS)
        with self._explained():
            probe.list_objects_v2(Bucket=self.bucket, Prefix=self._object(""), MaxKeys=1)

    def exists(self, key: str) -> bool:
        return self._is_object(key) or bool(self._folder_objects(key, limit=1))

    def fetch(self, key: str, destination: Path) -> Path:
        with self._explained():
            if self._is_object(key):
                destination.parent.mkdir(parents=True, exist_ok=True)
                self._client.download_file(self.bucket, self._object(key), str(destination))
                return destination
            objects = self._folder_objects(key)
            if not objects:
                raise FileNotFoundError(f"nothing stored at {key}")
            for stored in objects:
                relative = stored.key.removeprefix(key + "/")
                target = destination / checked_relative(relative)
                target.parent.mkdir(parents=True, exist_ok=True)
                self._client.download_file(self.bucket, self._object(stored.key), str(target))
        return destination

    def delete(self, key: str) -> None:
        with self._explained():
            self._client.delete_object(Bucket=self.bucket, Key=self._object(checked_key(key)))
            names = [self._object(stored.key) for stored in self._folder_objects(key)]
            for start in range(0, len(names), 1000):  # DeleteObjects takes at most 1000 keys
                batch: list[ObjectIdentifierTypeDef] = [{"Key": name} for name in names[start : start + 1000]]
                answer = self._client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
                if answer.get("Errors"):
                    first = answer["Errors"][0]
                    raise StorageError(
                        f"CONVBOT_STORAGE_URL: could not delete {first.get('Key')} from {self.location}: "
                        f"{first.get('Code')}"
                    )

    def list_files(self, key: str = "") -> list[StoredFile]:
        if not key:
            return [stored for area in AREAS for stored in self._listed(area + "/")]
        return [stored for stored in self._listed(checked_key(key)) if stored.key == key] + self._folder_objects(key)

    def _write_file(self, source: Path, key: str) -> None:
        with self._explained():  # s3transfer writes the object whole (or its parts, then completes it)
            self._client.upload_file(str(source), self.bucket, self._object(checked_key(key)))

    # -- objects ------------------------------------------------------------------------------

    def _object(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _is_object(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        with self._explained():
            try:
                self._client.head_object(Bucket=self.bucket, Key=self._object(checked_key(key)))
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") in _MISSING:
                    return False
                raise
        return True

    def _folder_objects(self, key: str, limit: int = 0) -> list[StoredFile]:
        return self._listed(checked_key(key) + "/", limit)

    def _listed(self, key_prefix: str, limit: int = 0) -> list[StoredFile]:
        """Objects whose key starts with `key_prefix` (at most `limit` of them when set)."""
        found: list[StoredFile] = []
        pages = self._client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self._object(key_prefix), PaginationConfig={"MaxItems": limit} if limit else {}
        )
        with self._explained():
            for page in pages:
                for item in page.get("Contents", []):
                    key = item["Key"].removeprefix(f"{self.prefix}/" if self.prefix else "")
                    found.append(StoredFile(key, item["Size"], item["LastModified"].astimezone(UTC)))
        return found

    # -- the client and its errors --------------------------------------------------------------

    def _make_client(self, timeouts: Timeouts) -> S3Client:
        import boto3
        from botocore.config import Config

        config: Config = Config(
            connect_timeout=timeouts.connect_seconds,
            read_timeout=timeouts.read_seconds,
            retries={"total_max_attempts": timeouts.attempts, "mode": "standard"},
            # SeaweedFS, MinIO and a host name without a wildcard DNS record want the bucket in the path.
            s3={"addressing_style": "path"} if self.endpoint_url else None,
        )
        return boto3.session.Session().client("s3", endpoint_url=self.endpoint_url or None, config=config)

    @contextmanager
    def _explained(self) -> Iterator[None]:
        """botocore's errors as StorageError lines naming the setting at fault (a missing object passes)."""
        from boto3.exceptions import Boto3Error
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            yield
        except (ClientError, BotoCoreError, Boto3Error) as error:
            cause = _botocore_cause(error)
            if isinstance(cause, ClientError):
                code = str(cause.response.get("Error", {}).get("Code", ""))
                if code in _MISSING:
                    raise
                raise StorageError(self._client_error_line(code, cause)) from error
            raise StorageError(self._connection_error_line(cause)) from error

    def _client_error_line(self, code: str, error: BaseException) -> str:
        where = f"{self.location} at {self._endpoint}"
        if code in ("NoSuchBucket", "InvalidBucketName"):
            return f"CONVBOT_STORAGE_URL: bucket {self.bucket!r} does not exist at {self._endpoint}"
        if code in _CREDENTIALS_REFUSED or code == "403":
            return (
                f"AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY: refused by {where} ({code}): "
                "check the key, its secret and its rights on the bucket"
            )
        if code in _WRONG_REGION:
            return f"AWS_DEFAULT_REGION: bucket {self.bucket!r} is in another region ({code})"
        return f"CONVBOT_STORAGE_URL: {where}: {code}: {_one_line(str(error))}"

    def _connection_error_line(self, error: BaseException) -> str:
        from botocore.exceptions import (
            ConnectionClosedError,
            EndpointConnectionError,
            InvalidRegionError,
            NoCredentialsError,
            PartialCredentialsError,
            ReadTimeoutError,
        )

        if isinstance(error, NoCredentialsError | PartialCredentialsError):
            return f"AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY: not set, or incomplete, for {self.location}"
        if isinstance(error, InvalidRegionError):
            return f"AWS_DEFAULT_REGION: {_one_line(str(error))}"
        if isinstance(error, ReadTimeoutError | ConnectionClosedError):
            return f"CONVBOT_S3_ENDPOINT_URL: {self._endpoint} took the connection but did not answer"
        if isinstance(error, EndpointConnectionError):  # refused, unreachable, timed out, unknown host
            return f"CONVBOT_S3_ENDPOINT_URL: cannot connect to {self._endpoint}"
        return f"CONVBOT_S3_ENDPOINT_URL: {self._endpoint}: {type(error).__name__}: {_one_line(str(error))}"


def stored_key(recorded: str, data_dir: Path) -> str:
    """The storage key a record holds. Records written before storage keys hold the absolute path of a file
    in the data folder: its part below the folder is its key."""
    path = Path(recorded)
    if path.is_absolute() and path.is_relative_to(data_dir):
        return path.relative_to(data_dir).as_posix()
    return recorded


def storage_from_settings(settings: Settings) -> Storage:
    """The storage CONVBOT_STORAGE_URL names: the data folder when it is empty."""
    if not settings.storage_url:
        return FolderStorage(settings.data_dir)
    bucket, prefix = parse_storage_url(settings.storage_url)
    return S3Storage(bucket, prefix, settings.s3_endpoint_url)


def _botocore_cause(error: BaseException) -> BaseException:
    """The botocore error under boto3's transfer errors (S3UploadFailedError wraps a ClientError,
    RetriesExceededError keeps its last one)."""
    from botocore.exceptions import BotoCoreError, ClientError

    seen = error
    while not isinstance(seen, ClientError | BotoCoreError):
        inner = getattr(seen, "last_exception", None) or seen.__cause__ or seen.__context__
        if not isinstance(inner, BaseException):
            return error
        seen = inner
    return seen


def _folder_files(folder: Path) -> Iterator[tuple[Path, str]]:
    """(path, '/'-joined path relative to `folder`) of each regular file under `folder`, links never
    followed; nothing when `folder` is not a real folder. Names are kept as they are: a TF.js model.json
    names its weight files, and the folder may hold uploads stored before names were sanitised."""
    if not _is_real_dir(folder):
        return
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            path = Path(root) / name
            if _is_regular_file(path):
                yield path, path.relative_to(folder).as_posix()


def _is_real_dir(path: Path) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def _is_regular_file(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def _one_line(text: str) -> str:
    return " ".join(text.split())

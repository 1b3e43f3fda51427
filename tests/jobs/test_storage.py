"""The storage seam: the same assertions on the data folder and on a real S3 server (SeaweedFS, started by
tests/storage_fixtures.py), and the one-line errors of a storage that cannot be used."""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from jobs.settings import SettingsError, load_settings
from jobs.storage import FolderStorage, S3Storage, Storage, StorageError, storage_from_settings, upload_key
from tests.storage_fixtures import SeaweedS3


@pytest.fixture(params=["folder", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    """The data folder, or a fresh prefix of the SeaweedFS bucket."""
    if request.param == "folder":
        return FolderStorage(tmp_path / "data")
    server: SeaweedS3 = request.getfixturevalue("s3_environment")
    return S3Storage(server.bucket, f"tests/{uuid.uuid4().hex[:12]}", server.endpoint_url)


@pytest.fixture
def sources(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    return folder


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def tfjs_like_folder(folder: Path) -> dict[str, bytes]:
    """A TF.js graph model's files (model.json and its weight shards), with bytes of every value."""
    files = {
        "model.json": b'{"format": "graph-model", "weightsManifest": [{"paths": ["group1-shard1of2.bin"]}]}',
        "group1-shard1of2.bin": bytes(range(256)) * 40,
        "group1-shard2of2.bin": os.urandom(3000),
    }
    for name, data in files.items():
        write(folder / name, data)
    return files


def tree(folder: Path) -> dict[str, bytes]:
    return {path.relative_to(folder).as_posix(): path.read_bytes() for path in folder.rglob("*") if path.is_file()}


@pytest.mark.parametrize("size", [70_000, 9 * 1024 * 1024])  # 9 MB: over s3transfer's 8 MB multipart threshold
def test_a_file_round_trips(storage: Storage, sources: Path, tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    key = storage.put_artifact(41, write(sources / "pose.tflite", data))
    assert key == "artifacts/41/pose.tflite"
    assert storage.exists(key)
    fetched = storage.fetch(key, tmp_path / "worker" / "pose.tflite")
    assert fetched.read_bytes() == data


def test_a_tfjs_folder_round_trips(storage: Storage, sources: Path, tmp_path: Path) -> None:
    files = tfjs_like_folder(sources / "pose_tfjs")
    key = storage.put_artifact(42, sources / "pose_tfjs")
    assert key == "artifacts/42/pose_tfjs"
    assert storage.exists(key)
    assert not storage.exists(f"{key}/no-such-shard.bin")
    fetched = storage.fetch(key, tmp_path / "worker" / "pose_tfjs")
    assert tree(fetched) == files
    assert {(stored.key, stored.size) for stored in storage.list_files(key)} == {
        (f"{key}/{name}", len(data)) for name, data in files.items()
    }


def test_an_upload_is_stored_once_by_its_hash(storage: Storage, sources: Path) -> None:
    data = b"frozen graph bytes" * 1000
    key = storage.put_upload(write(sources / "first" / "posenet.pb", data), "posenet.pb")
    assert key == upload_key(hashlib.sha256(data).hexdigest(), "posenet.pb")
    assert key.startswith(f"models/{key.split('/')[2][:2]}/")
    [stored] = storage.list_files()
    time.sleep(1.1)  # S3 keeps whole seconds: a second write would show a later time
    again = storage.put_upload(write(sources / "second" / "posenet.pb", data), "posenet.pb")
    assert again == key
    assert storage.list_files() == [stored]  # same time: nothing was written
    other = storage.put_upload(write(sources / "other.pb", data + b"!"), "posenet.pb")
    assert other != key and len(storage.list_files()) == 2


def test_delete_removes_a_file_or_a_folder_and_nothing_else(storage: Storage, sources: Path, tmp_path: Path) -> None:
    tfjs_like_folder(sources / "m_tfjs")
    folder = storage.put_artifact(7, sources / "m_tfjs")
    file = storage.put_artifact(7, write(sources / "m.tflite", b"tflite"))
    neighbour = storage.put_artifact(77, write(sources / "n.tflite", b"another job"))

    storage.delete(folder)
    assert not storage.exists(folder)
    with pytest.raises(FileNotFoundError):
        storage.fetch(folder, tmp_path / "gone")
    assert storage.exists(file)
    storage.delete(folder)  # nothing there: no error

    storage.delete("artifacts/7")  # the job's folder: job 77's files are not under it
    assert not storage.exists(file)
    assert [stored.key for stored in storage.list_files()] == [neighbour]


def test_listing_gives_every_file_with_its_size_and_time(storage: Storage, sources: Path) -> None:
    before = datetime.now(UTC) - timedelta(seconds=2)  # S3 rounds down to the second
    upload = storage.put_upload(write(sources / "a.h5", b"h" * 1234), "a.h5")
    files = tfjs_like_folder(sources / "a_tfjs")
    folder = storage.put_artifact(1, sources / "a_tfjs")
    file = storage.put_artifact(12, write(sources / "a.tflite", b"t" * 4321))
    after = datetime.now(UTC) + timedelta(seconds=2)

    listed = storage.list_files()
    expected = {(upload, 1234), (file, 4321)} | {(f"{folder}/{name}", len(data)) for name, data in files.items()}
    assert {(stored.key, stored.size) for stored in listed} == expected
    assert all(before <= stored.modified <= after for stored in listed)
    assert {stored.key for stored in storage.list_files("artifacts/1")} == {f"{folder}/{name}" for name in files}
    assert [stored.key for stored in storage.list_files(file)] == [file]
    assert storage.list_files("artifacts/3") == []


@pytest.mark.parametrize(
    ("typed", "stored_as"),
    [
        ("../../x", "x"),
        ("..\\..\\evil.pb", "evil.pb"),
        ("/etc/passwd", "passwd"),
        ("..", "_.."),
        (".bashrc", "_.bashrc"),
        ("", "model"),
        ("my model (v2)?.h5", "my_model_v2_.h5"),
        ("модель.keras", "модель.keras"),
        ("a" * 400 + ".pb", "a" * 147 + ".pb"),
    ],
)
def test_a_typed_name_cannot_leave_the_storage(
    storage: Storage, sources: Path, tmp_path: Path, typed: str, stored_as: str
) -> None:
    data = typed.encode() + b" bytes"
    key = storage.put_upload(write(sources / "upload", data), typed)
    digest = hashlib.sha256(data).hexdigest()
    assert key == f"models/{digest[:2]}/{digest}/{stored_as}"
    assert storage.fetch(key, tmp_path / "worker" / "model").read_bytes() == data
    assert [stored.key for stored in storage.list_files()] == [key]
    if isinstance(storage, FolderStorage):  # nothing written anywhere else
        written = {path.relative_to(tmp_path).as_posix() for path in tmp_path.rglob("*") if path.is_file()}
        assert written == {"in/upload", f"data/{key}", "worker/model"}


@pytest.mark.parametrize(
    "key",
    ["../x", "models/../../x", "artifacts/1/../../../etc", "/etc/passwd", "models\\..\\x", "tmp/job-1", "models"],
)
def test_a_key_that_would_leave_the_storage_is_refused(storage: Storage, tmp_path: Path, key: str) -> None:
    for use in (storage.exists, storage.delete, storage.list_files, lambda k: storage.fetch(k, tmp_path / "x")):
        with pytest.raises(ValueError, match="not a storage key"):
            use(key)


def test_the_s3_check_passes_on_a_bucket_it_can_read(s3_environment: SeaweedS3) -> None:
    S3Storage(s3_environment.bucket, "tests", s3_environment.endpoint_url).check()


@pytest.fixture
def silent_endpoint() -> Iterator[str]:
    """A port that takes connections and never answers (a hung server, or a firewall that drops replies)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        stop = threading.Event()

        def hold() -> None:  # accept, never answer
            held = []
            server.settimeout(0.2)
            while not stop.is_set():
                try:
                    held.append(server.accept()[0])
                except TimeoutError:
                    continue
            for connection in held:
                connection.close()

        thread = threading.Thread(target=hold, daemon=True)
        thread.start()
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
        stop.set()
        thread.join(timeout=5)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize(
    ("case", "setting"),
    [
        ("no such bucket", "CONVBOT_STORAGE_URL: bucket 'no-such-bucket' does not exist"),
        ("wrong secret", "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY: refused"),
        ("unknown key id", "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY: refused"),
        ("nothing listens", "CONVBOT_S3_ENDPOINT_URL: cannot connect to http://127.0.0.1:"),
        ("never answers", "CONVBOT_S3_ENDPOINT_URL: http://127.0.0.1:"),
    ],
)
def test_the_s3_check_names_the_setting_at_fault(
    s3_environment: SeaweedS3, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest, case: str, setting: str
) -> None:
    bucket, endpoint = s3_environment.bucket, s3_environment.endpoint_url
    if case == "no such bucket":
        bucket = "no-such-bucket"
    elif case == "wrong secret":
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    elif case == "unknown key id":
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "nobody")
    elif case == "nothing listens":
        endpoint = f"http://127.0.0.1:{closed_port()}"
    else:
        endpoint = request.getfixturevalue("silent_endpoint")
    storage = S3Storage(bucket, "tests", endpoint)
    started = time.monotonic()
    with pytest.raises(StorageError) as raised:
        storage.check()
    elapsed = time.monotonic() - started
    message = str(raised.value)
    assert message.startswith(setting), message
    assert "\n" not in message
    assert "not-the-secret" not in message
    assert elapsed < 12.0, f"check() took {elapsed:.1f} s"


def test_the_folder_check_names_the_data_dir(tmp_path: Path) -> None:
    write(tmp_path / "data", b"a file where the data folder should be")
    with pytest.raises(StorageError, match=r"^CONVBOT_DATA_DIR: cannot create .*/data/models"):
        FolderStorage(tmp_path / "data").check()


def test_settings_choose_the_storage(tmp_path: Path) -> None:
    folder = storage_from_settings(load_settings(data_dir=tmp_path))
    assert isinstance(folder, FolderStorage) and folder.location == str(tmp_path)
    s3 = storage_from_settings(
        load_settings(data_dir=tmp_path, storage_url="s3://convbot-files/prod/", s3_endpoint_url="http://s3:8333/")
    )
    assert isinstance(s3, S3Storage)
    assert (s3.location, s3.endpoint_url) == ("s3://convbot-files/prod", "http://s3:8333")


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("CONVBOT_STORAGE_URL", "/srv/convbot"),
        ("CONVBOT_STORAGE_URL", "s3://Convbot_Files"),
        ("CONVBOT_STORAGE_URL", "s3://convbot/../other"),
        ("CONVBOT_S3_ENDPOINT_URL", "seaweedfs:8333"),
    ],
)
def test_a_bad_storage_setting_is_named(monkeypatch: pytest.MonkeyPatch, variable: str, value: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match=f"{variable}: "):
        load_settings()

"""Tests for converter.archive: every archive is built for real in tmp_path."""

from __future__ import annotations

import gzip
import io
import os
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from converter.archive import ArchiveLimits, archive_kind, extract_archive
from converter.errors import UnsafeArchiveError, UnsupportedModelError

MODEL_FILES = {
    "model/saved_model.pb": b"\x08\x01" + os.urandom(2000),
    "model/variables/variables.index": os.urandom(300),
    "model/variables/variables.data-00000-of-00001": os.urandom(5000),
}
DEFAULT = ArchiveLimits()
LOOSE = ArchiveLimits(max_ratio=1e9)  # for tests whose archives compress well on purpose


def make_zip(path: Path, files: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", method) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path


def tar_member(
    name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE, link: str = ""
) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, link, len(data) if kind == tarfile.REGTYPE else 0
    return info, data


def make_tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes]], *, gz: bool = True) -> Path:
    with tarfile.open(path, "w:gz" if gz else "w") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return path


def files_tar(path: Path, files: dict[str, bytes], *, gz: bool = True) -> Path:
    return make_tar(path, [tar_member(name, data) for name, data in files.items()], gz=gz)


def refuse(
    archive: Path,
    tmp_path: Path,
    limits: ArchiveLimits = DEFAULT,
    error: type[UnsupportedModelError] = UnsafeArchiveError,
) -> str:
    """Extract expecting `error`; check that nothing was left behind; return the message."""
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(error) as caught:
        extract_archive(archive, dest, limits)
    assert list(dest.iterdir()) == []
    assert not (tmp_path / "evil").exists()
    message = caught.value.message
    assert "\n" not in message
    assert len(message) < 120
    return message


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def patch_zip(path: Path, *, local: int, central: int, value: bytes, mode: str = "set") -> None:
    """Overwrite a field of the first member in both its local header and its central record."""
    data = bytearray(path.read_bytes())
    for start in (data.index(b"PK\x03\x04") + local, data.index(b"PK\x01\x02") + central):
        end = start + len(value)
        if mode == "or":
            data[start:end] = bytes(a | b for a, b in zip(data[start:end], value, strict=True))
        else:
            data[start:end] = value
    path.write_bytes(bytes(data))


# --- normal archives ---------------------------------------------------------------------


def test_zip_with_saved_model_extracts(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "m.zip", {"model/": b"", "model/variables/": b"", **MODEL_FILES})
    dest = tmp_path / "dest"
    dest.mkdir()
    assert extract_archive(archive, dest) == dest
    assert tree(dest) == MODEL_FILES


@pytest.mark.parametrize("gz", [True, False])
def test_tar_with_saved_model_extracts(tmp_path: Path, gz: bool) -> None:
    src = tmp_path / "src"
    for name, data in MODEL_FILES.items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(data)
    archive = tmp_path / "m.tgz"
    with tarfile.open(archive, "w:gz" if gz else "w") as tar:
        tar.add(src, arcname=".")  # "./", "./model", ... as `tar -C src -czf m.tgz .` writes
    dest = tmp_path / "dest"
    dest.mkdir()
    extract_archive(archive, dest)
    assert tree(dest) == MODEL_FILES


# --- archive_kind ------------------------------------------------------------------------


def test_archive_kind_by_content_not_name(tmp_path: Path) -> None:
    assert archive_kind(make_zip(tmp_path / "a.bin", MODEL_FILES)) == "zip"
    assert archive_kind(make_zip(tmp_path / "empty.zip", {})) == "zip"
    assert archive_kind(files_tar(tmp_path / "a.zip", MODEL_FILES, gz=False)) == "tar"
    assert archive_kind(files_tar(tmp_path / "b.zip", MODEL_FILES)) == "tar.gz"
    (tmp_path / "random.zip").write_bytes(os.urandom(4096))
    assert archive_kind(tmp_path / "random.zip") is None
    (tmp_path / "empty.tar.gz").write_bytes(b"")
    assert archive_kind(tmp_path / "empty.tar.gz") is None
    (tmp_path / "plain.gz").write_bytes(gzip.compress(b"not a tar" * 100))
    assert archive_kind(tmp_path / "plain.gz") is None  # a gzip of a non-tar is not an archive


def test_non_archive_is_refused(tmp_path: Path) -> None:
    (tmp_path / "model.zip").write_bytes(os.urandom(1000))
    assert "not a zip or tar archive" in refuse(tmp_path / "model.zip", tmp_path, error=UnsupportedModelError)


# --- escaping the folder -----------------------------------------------------------------


@pytest.mark.parametrize("name", ["../evil", "/abs/path", "model/../../evil", "..\\evil", "C:\\evil", "C:/evil"])
def test_zip_path_outside_folder_is_refused(tmp_path: Path, name: str) -> None:
    archive = make_zip(tmp_path / "m.zip", {**MODEL_FILES, name: b"pwned"})
    message = refuse(archive, tmp_path)
    assert message == f"the archive contains a path outside its folder: {name!r}"


@pytest.mark.parametrize("name", ["../evil", "/abs/path", "./model/../../evil"])
def test_tar_path_outside_folder_is_refused(tmp_path: Path, name: str) -> None:
    archive = files_tar(tmp_path / "m.tgz", {**MODEL_FILES, name: b"pwned"})
    assert refuse(archive, tmp_path) == f"the archive contains a path outside its folder: {name!r}"


def test_zip_symlink_is_refused(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "m.zip", MODEL_FILES)
    link = zipfile.ZipInfo("model/evil")
    link.create_system = 3  # unix, so external_attr carries an st_mode
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    with zipfile.ZipFile(archive, "a") as zf:
        zf.writestr(link, "/etc/passwd")
    message = refuse(archive, tmp_path)
    assert message == "the archive contains a link ('model/evil -> /etc/passwd'); links are not accepted"


@pytest.mark.parametrize(
    ("kind", "target"), [(tarfile.SYMTYPE, "/etc/passwd"), (tarfile.LNKTYPE, "model/saved_model.pb")]
)
def test_tar_link_is_refused(tmp_path: Path, kind: bytes, target: str) -> None:
    members = [tar_member(n, d) for n, d in MODEL_FILES.items()]
    archive = make_tar(tmp_path / "m.tgz", [*members, tar_member("model/a", kind=kind, link=target)])
    message = refuse(archive, tmp_path)
    assert message == f"the archive contains a link ('model/a -> {target}'); links are not accepted"


@pytest.mark.parametrize("kind", [tarfile.FIFOTYPE, tarfile.CHRTYPE, tarfile.BLKTYPE])
def test_tar_device_or_fifo_is_refused(tmp_path: Path, kind: bytes) -> None:
    archive = make_tar(tmp_path / "m.tgz", [tar_member("model/dev", kind=kind)])
    assert "special file ('model/dev')" in refuse(archive, tmp_path)


def test_repeated_name_does_not_overwrite(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "m.zip", MODEL_FILES)
    with zipfile.ZipFile(archive, "a") as zf, pytest.warns(UserWarning, match="Duplicate name"):
        zf.writestr("model/saved_model.pb", b"second")
    assert "clashing entries at 'model/saved_model.pb'" in refuse(archive, tmp_path)


# --- size, ratio and entry limits --------------------------------------------------------


def test_zip_that_lies_about_its_sizes_is_stopped(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "m.zip", {"model/big.bin": os.urandom(100_000)})
    # Declare 10 bytes unpacked in both headers while the data still inflates to 100 KB.
    patch_zip(archive, local=22, central=24, value=(10).to_bytes(4, "little"))
    limits = ArchiveLimits(max_total_bytes=50_000, max_ratio=1e9)
    message = refuse(archive, tmp_path, limits, UnsupportedModelError)
    assert message in (
        "the archive is damaged or truncated",  # zipfile stops at the declared size, then the CRC fails
        "the archive would unpack to more than 48.8 KB; send a smaller model",
    )


def test_zip_bomb_is_refused_by_ratio(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "m.zip", {"model/saved_model.pb": bytes(30 * 1024**2)})
    message = refuse(archive, tmp_path, ArchiveLimits(max_ratio=20))
    assert message == "the archive unpacks to more than 20 times its size (a possible archive bomb); refused"


def test_tar_gz_bomb_is_refused_by_ratio(tmp_path: Path) -> None:
    archive = tmp_path / "m.tgz"
    with tarfile.open(archive, "w:gz", compresslevel=1) as tar:
        info, _ = tar_member("model/saved_model.pb", b"x" * 64)
        info.size = 10 * 1024**2
        tar.addfile(info, io.BytesIO(bytes(info.size)))
    assert "more than 20 times its size" in refuse(archive, tmp_path, ArchiveLimits(max_ratio=20))


def test_huge_tar_header_is_refused_before_it_is_read_into_memory(tmp_path: Path) -> None:
    info, data = tar_member("model/saved_model.pb", b"pb")
    info.pax_headers = {"comment": "x" * 3_000_000}
    archive = tmp_path / "m.tgz"
    with tarfile.open(archive, "w:gz", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(info, io.BytesIO(data))
    limits = ArchiveLimits(max_total_bytes=1000, max_ratio=1e9, max_entries=5)
    message = refuse(archive, tmp_path, limits)
    assert message == "the archive would unpack to more than 1000 B; send a smaller model"


@pytest.mark.parametrize("fmt", ["zip", "tar.gz"])
def test_entry_limit(tmp_path: Path, fmt: str) -> None:
    files = {f"model/f{i}": b"data" for i in range(6)}
    archive = make_zip(tmp_path / "m", files) if fmt == "zip" else files_tar(tmp_path / "m", files)
    limits = ArchiveLimits(max_entries=5, max_ratio=1e9)
    assert refuse(archive, tmp_path, limits) == "the archive has more than 5 entries"


def test_entry_limit_message_formats_the_number(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "m.zip", {f"model/f{i}": b"" for i in range(1001)})
    limits = ArchiveLimits(max_entries=1000)
    assert refuse(archive, tmp_path, limits) == "the archive has more than 1,000 entries"


@pytest.mark.parametrize("fmt", ["zip", "tar.gz", "tar"])
def test_total_bytes_limit(tmp_path: Path, fmt: str) -> None:
    files = {"model/a": os.urandom(3000), "model/b": os.urandom(3000)}
    archive = {
        "zip": lambda: make_zip(tmp_path / "m", files),
        "tar.gz": lambda: files_tar(tmp_path / "m", files),
        "tar": lambda: files_tar(tmp_path / "m", files, gz=False),
    }[fmt]()
    limits = ArchiveLimits(max_total_bytes=4 * 1024, max_ratio=1e9)
    assert refuse(archive, tmp_path, limits) == "the archive would unpack to more than 4.0 KB; send a smaller model"


def test_default_limit_message_says_2_gb(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "m.zip", {"model/a": b"x"})
    patch_zip(archive, local=22, central=24, value=(3 * 1024**3).to_bytes(4, "little"))
    assert refuse(archive, tmp_path, LOOSE) == "the archive would unpack to more than 2.0 GB; send a smaller model"


# --- damaged and unsupported archives ----------------------------------------------------


@pytest.mark.parametrize("fmt", ["zip", "tar.gz"])
def test_truncated_archive(tmp_path: Path, fmt: str) -> None:
    archive = make_zip(tmp_path / "m", MODEL_FILES) if fmt == "zip" else files_tar(tmp_path / "m", MODEL_FILES)
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) // 2])
    assert refuse(archive, tmp_path, error=UnsupportedModelError) == "the archive is damaged or truncated"


def test_corrupt_zip_data_fails_its_crc(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "m.zip", {"model/saved_model.pb": os.urandom(1000)}, zipfile.ZIP_STORED)
    data = bytearray(archive.read_bytes())
    data[100] ^= 0xFF  # inside the stored member's bytes
    archive.write_bytes(bytes(data))
    assert refuse(archive, tmp_path, error=UnsupportedModelError) == "the archive is damaged or truncated"


def test_encrypted_zip(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "m.zip", MODEL_FILES)
    patch_zip(archive, local=6, central=8, value=b"\x01\x00", mode="or")
    assert "password-protected" in refuse(archive, tmp_path, error=UnsupportedModelError)


def test_unsupported_zip_compression(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "m.zip", MODEL_FILES, zipfile.ZIP_LZMA)
    assert "unsupported compression method" in refuse(archive, tmp_path, error=UnsupportedModelError)


def test_dest_must_be_empty(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "m.zip", MODEL_FILES)
    (tmp_path / "keep").write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        extract_archive(archive, tmp_path)
    assert (tmp_path / "keep").exists()

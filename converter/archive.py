"""Unpack an untrusted zip or tar(.gz) upload into a private folder, refusing anything that
could escape that folder or unpack to far more than the upload holds."""

from __future__ import annotations

import gzip
import io
import re
import shutil
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from converter.errors import UnsafeArchiveError, UnsupportedModelError
from converter.formats import GZIP_MAGIC, TAR_MAGIC, TAR_MAGIC_OFFSET, ZIP_EMPTY_MAGIC, ZIP_MAGIC
from converter.units import format_size

_CHUNK = 1024 * 1024
_MAX_NAME = 1024  # longer names only serve to trip ENAMETOOLONG deep inside the write
# bzip2 keeps decoder memory small; lzma headers can ask for a multi-GB dictionary.
_ZIP_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2)
_DAMAGED = (zipfile.BadZipFile, zlib.error, EOFError, tarfile.TarError, gzip.BadGzipFile, UnicodeDecodeError)


@dataclass(frozen=True)
class ArchiveLimits:
    max_total_bytes: int = 2 * 1024**3  # unpacked bytes
    max_ratio: float = 20.0  # unpacked bytes / archive file size
    max_entries: int = 10_000


def archive_kind(path: Path) -> str | None:
    """Return "zip", "tar" or "tar.gz", judged by content and never by name; None for anything
    else, including a gzip whose first block does not decompress to a tar header."""
    with path.open("rb") as f:
        head = f.read(TAR_MAGIC_OFFSET + len(TAR_MAGIC))
    if head.startswith((ZIP_MAGIC, ZIP_EMPTY_MAGIC)):
        return "zip"
    if _is_tar_header(head):
        return "tar"
    if head.startswith(GZIP_MAGIC):
        try:
            with gzip.open(path, "rb") as gz:
                inner = gz.read(TAR_MAGIC_OFFSET + len(TAR_MAGIC))
        except (OSError, EOFError, zlib.error):
            return None
        return "tar.gz" if _is_tar_header(inner) else None
    return None


def extract_archive(path: Path, dest: Path, limits: ArchiveLimits = ArchiveLimits()) -> Path:
    """Unpack `path` into the empty directory `dest` and return `dest`; on any failure `dest`
    is left empty and UnsafeArchiveError / UnsupportedModelError says why in one line."""
    if any(dest.iterdir()):
        raise ValueError(f"{dest} must be an empty directory")
    kind = archive_kind(path)
    if kind is None:
        raise UnsupportedModelError("the file is not a zip or tar archive")
    budget = _Budget(limits, path.stat().st_size)
    root = dest.resolve()
    try:
        if kind == "zip":
            _extract_zip(path, root, budget)
        else:
            _extract_tar(path, root, budget, gzipped=kind == "tar.gz")
    except BaseException as e:
        _empty(dest)
        if isinstance(e, _DAMAGED):
            raise UnsupportedModelError("the archive is damaged or truncated", log=repr(e)) from e
        if isinstance(e, NotImplementedError):  # zipfile's word for an unknown method
            raise _unsupported_method() from e
        raise
    return dest


class _Budget:
    """Counts entries and unpacked bytes against the limits; raises the moment one is crossed."""

    def __init__(self, limits: ArchiveLimits, archive_size: int) -> None:
        self.limits, self.archive_size = limits, archive_size
        self.ratio_cap = limits.max_ratio * max(archive_size, 1)
        self.cap = min(float(limits.max_total_bytes), self.ratio_cap)
        self.entries = self.declared = self.written = 0

    def add_entries(self, n: int) -> None:
        self.entries += n
        if self.entries > self.limits.max_entries:
            raise UnsafeArchiveError(f"the archive has more than {self.limits.max_entries:,} entries")

    def declare(self, n: int) -> None:
        self.declared += n
        self.check(self.declared)

    def write(self, n: int) -> None:
        self.written += n
        self.check(self.written)

    def check(self, total: float) -> None:
        if total > self.limits.max_total_bytes:
            raise UnsafeArchiveError(
                f"the archive would unpack to more than {format_size(self.limits.max_total_bytes)}; "
                "send a smaller model"
            )
        if total > self.ratio_cap:
            raise UnsafeArchiveError(
                f"the archive unpacks to more than {self.limits.max_ratio:g} times its size "
                "(a possible archive bomb); refused"
            )


class _CappedReader(io.BufferedIOBase):
    """Caps the raw tar stream: tarfile reads pax and GNU long-name headers whole into
    memory before yielding a member, so the member byte counter alone cannot bound them."""

    def __init__(self, src: io.BufferedIOBase, budget: _Budget) -> None:
        super().__init__()
        self.src, self.budget, self.read_bytes = src, budget, 0
        # Room for each entry's 512-byte header, pax record and padding on top of the content.
        self.limit = budget.cap + 4096 * (budget.limits.max_entries + 16)

    def read(self, size: int | None = -1, /) -> bytes:
        data = self.src.read(-1 if size is None else size)
        self.read_bytes += len(data)
        if self.read_bytes > self.limit:
            self.budget.check(self.budget.cap + 1)
        return data


def _extract_zip(path: Path, root: Path, budget: _Budget) -> None:
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
        budget.add_entries(len(infos))
        budget.declare(sum(info.file_size for info in infos))  # fails fast; the writes recount
        for info in infos:
            if not 0 <= info.header_offset < budget.archive_size:  # else zipfile seeks to nowhere
                raise zipfile.BadZipFile(f"{info.filename!r} starts at offset {info.header_offset}")
            if info.flag_bits & 0x1:
                raise UnsupportedModelError("the archive is password-protected; send it without a password")
            if info.compress_type not in _ZIP_METHODS:
                raise _unsupported_method()
            mode = info.external_attr >> 16  # unix st_mode, set by zip tools on unix hosts
            if stat.S_ISLNK(mode):
                with zf.open(info) as src:  # a zipped link's content is its target
                    link = src.read(200).decode("utf-8", "replace")
                raise _link_error(info.filename, link)
            if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
                raise _special_error(info.filename)
            is_dir = info.filename.endswith("/") or stat.S_ISDIR(mode)
            target = _target(root, info.filename, is_dir=is_dir)
            if is_dir:
                _mkdir(target, info.filename)
            else:
                with zf.open(info) as src:
                    _write_file(src, target, info.filename, budget)


def _extract_tar(path: Path, root: Path, budget: _Budget, *, gzipped: bool) -> None:
    # GzipFile rather than tarfile's "r|gz": it checks the gzip CRC and reports truncation.
    with path.open("rb") as f:
        stream = gzip.GzipFile(fileobj=f) if gzipped else f
        with tarfile.open(fileobj=_CappedReader(stream, budget), mode="r|") as tar:
            for member in tar:
                budget.add_entries(1)
                if member.issym() or member.islnk():
                    raise _link_error(member.name, member.linkname)
                if not (member.isreg() or member.isdir()):
                    raise _special_error(member.name)
                target = _target(root, member.name, is_dir=member.isdir())
                if member.isdir():
                    _mkdir(target, member.name)
                    continue
                if member.size < 0:  # tar's base-256 sizes can be negative
                    raise tarfile.ReadError(f"{member.name!r} has size {member.size}")
                budget.declare(member.size)
                src = tar.extractfile(member)
                assert src is not None  # always a stream for a regular file
                _write_file(src, target, member.name, budget)


def _target(root: Path, name: str, *, is_dir: bool) -> Path:
    """Where `name` lands inside `root`; refuses anything that could land elsewhere."""
    # Windows tools write backslashes as separators, so "..\\x" must count as traversal.
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    if len(name) > _MAX_NAME or any(len(p.encode("utf-8", "surrogateescape")) > 255 for p in parts):
        raise UnsafeArchiveError(f"the archive contains a name that is too long: {_shown(name)}")
    drive = bool(parts) and re.fullmatch(r"[A-Za-z]:.*", parts[0]) is not None
    # An empty name is tar's "./" entry for the top folder; as a file it has nowhere to go.
    if not (parts or is_dir) or name.startswith(("/", "\\")) or drive or ".." in parts or "\0" in name:
        raise _outside_error(name)
    target = root.joinpath(*parts).resolve()
    if not target.is_relative_to(root):
        raise _outside_error(name)
    return target


def _mkdir(target: Path, name: str) -> None:
    with _conflicts(name):
        target.mkdir(parents=True, exist_ok=True)


def _write_file(src: IO[bytes], target: Path, name: str, budget: _Budget) -> None:
    with _conflicts(name):
        target.parent.mkdir(parents=True, exist_ok=True)
        out = target.open("xb")  # "x": a repeated name must not overwrite an earlier file
    with out:
        while chunk := src.read(_CHUNK):
            budget.write(len(chunk))  # before writing, so nothing past a limit reaches disk
            out.write(chunk)


@contextmanager
def _conflicts(name: str) -> Iterator[None]:
    try:
        yield
    except (FileExistsError, NotADirectoryError, IsADirectoryError) as e:
        raise UnsafeArchiveError(f"the archive has clashing entries at {_shown(name)}") from e


def _empty(dest: Path) -> None:
    for child in dest.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def _is_tar_header(head: bytes) -> bool:
    return head[TAR_MAGIC_OFFSET : TAR_MAGIC_OFFSET + len(TAR_MAGIC)] == TAR_MAGIC


def _shown(name: str) -> str:
    """A name as quoted in a message: repr escapes newlines, and long names are cut."""
    return repr(name if len(name) <= 80 else name[:77] + "...")


def _outside_error(name: str) -> UnsafeArchiveError:
    return UnsafeArchiveError(f"the archive contains a path outside its folder: {_shown(name)}")


def _link_error(name: str, link: str) -> UnsafeArchiveError:
    return UnsafeArchiveError(f"the archive contains a link ({_shown(f'{name} -> {link}')}); links are not accepted")


def _special_error(name: str) -> UnsafeArchiveError:
    return UnsafeArchiveError(
        f"the archive contains a special file ({_shown(name)}); only files and folders are accepted"
    )


def _unsupported_method() -> UnsupportedModelError:
    return UnsupportedModelError("the archive uses an unsupported compression method; re-pack it as a standard zip")


# Weights as float32 deflate by about 8 % at half a second per 17 MB: TF.js weight shards are stored as they are.
STORED_SUFFIXES = (".bin",)


def zip_folder(folder: Path, zip_path: Path, root: str = "") -> Path:
    """Zip every file under `folder` (links skipped), under the top-level folder `root` if given."""
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(folder.rglob("*")):
            if file.is_file() and not file.is_symlink():
                name = str(Path(root) / file.relative_to(folder)) if root else file.relative_to(folder)
                stored = file.suffix in STORED_SUFFIXES
                archive.write(file, name, compress_type=zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED)
    return zip_path

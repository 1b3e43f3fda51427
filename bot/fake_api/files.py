"""The file store: what users and the bot sent, by file_id, and what getFile and downloads serve.

With ``local_mode`` the store behaves like a local Bot API server: no 20 MB download limit, bots
may send ``file://`` paths, and getFile answers with an absolute path in a temporary directory.
"""

from __future__ import annotations

import mimetypes
import secrets
import shutil
import struct
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse
from urllib.request import url2pathname

from bot.fake_api.params import Upload
from bot.fake_api.protocol import DOWNLOAD_LIMIT, LOCAL_UPLOAD_LIMIT, ApiError, JSONDict

_FILE_ID_PREFIX = {"document": "BQACAgIAAxkBAA", "photo": "AgACAgIAAxkBAA", "sticker": "CAACAgIAAxkBAA"}
_FILE_FOLDER = {"document": "documents", "photo": "photos", "sticker": "stickers"}
_FILE_EXTENSION = {"photo": ".jpg", "sticker": ".webp"}


@dataclass
class StoredFile:
    file_id: str
    file_unique_id: str
    kind: str  # "document", "photo", "sticker"
    data: bytes
    file_size: int
    file_name: str | None = None
    mime_type: str | None = None
    file_path: str | None = None


class FileStore:
    """Every file sent in any chat; ``ids`` numbers file ids and paths (shared with other ids of the API)."""

    def __init__(self, ids: Iterator[int], *, local_mode: bool) -> None:
        self._ids = ids
        self._local_mode = local_mode
        self._local_dir: Path | None = None
        self._files: dict[str, StoredFile] = {}
        self._files_by_path: dict[str, StoredFile] = {}

    def open_local_dir(self) -> None:
        """Where getFile puts files in local mode, as a local server keeps them on its disk."""
        if self._local_mode:
            self._local_dir = Path(tempfile.mkdtemp(prefix="fake-bot-api-"))

    def remove_local_dir(self) -> None:
        if self._local_dir is not None:
            shutil.rmtree(self._local_dir, ignore_errors=True)
            self._local_dir = None

    def store(
        self,
        kind: str,
        data: bytes,
        *,
        file_name: str | None = None,
        mime_type: str | None = None,
        file_size: int | None = None,
    ) -> StoredFile:
        number = next(self._ids)
        stored = StoredFile(
            file_id=f"{_FILE_ID_PREFIX[kind]}{number:06d}{secrets.token_urlsafe(18)}",
            file_unique_id=f"AgAD{secrets.token_urlsafe(9)}",
            kind=kind,
            data=data,
            file_size=len(data) if file_size is None else file_size,
            file_name=file_name,
            mime_type=mime_type,
        )
        self._files[stored.file_id] = stored
        return stored

    def bot_file(self, document: Upload | str, kind: str = "document") -> StoredFile:
        """The file behind a document (or photo) the bot sends: an upload, a file_id, or a file:// path (local
        mode)."""
        if isinstance(document, Upload) and kind == "photo":  # a photo keeps no name
            return self.store(kind, document.data)
        if isinstance(document, Upload):
            name = document.filename or "document"
            mime = document.content_type
            if not mime or mime == "application/octet-stream":
                mime = mimetypes.guess_type(name)[0] or "application/octet-stream"
            return self.store("document", document.data, file_name=name, mime_type=mime)
        if document in self._files:
            return self._files[document]
        if document.startswith("file://"):
            if not self._local_mode:
                raise ApiError.bad_request("wrong HTTP URL specified")
            path = Path(url2pathname(unquote(urlparse(document).path)))
            if not path.is_file():
                raise ApiError.bad_request("file not found")
            if path.stat().st_size > LOCAL_UPLOAD_LIMIT:
                raise ApiError(413, "Request Entity Too Large")
            name = path.name
            mime = mimetypes.guess_type(name)[0] or "application/octet-stream"
            return self.store("document", path.read_bytes(), file_name=name, mime_type=mime)
        if document.startswith(("http://", "https://")):
            raise ApiError.bad_request("failed to get HTTP URL content")
        raise ApiError.bad_request("wrong file identifier/HTTP URL specified")

    def file_info(self, file_id: str) -> JSONDict:
        """What getFile answers: the file with a path to download it from (its first getFile names it)."""
        stored = self._files.get(file_id)
        if stored is None:
            raise ApiError.bad_request("invalid file_id")
        if not self._local_mode and stored.file_size > DOWNLOAD_LIMIT:
            raise ApiError.bad_request("file is too big")
        if stored.file_path is None:
            extension = Path(stored.file_name or "").suffix or _FILE_EXTENSION.get(stored.kind, "")
            stored.file_path = f"{_FILE_FOLDER[stored.kind]}/file_{next(self._ids)}{extension}"
            self._files_by_path[stored.file_path] = stored
        file_path = stored.file_path
        if self._local_mode and self._local_dir is not None:
            local = self._local_dir / stored.file_path
            if not local.exists():
                local.parent.mkdir(parents=True, exist_ok=True)
                local.write_bytes(stored.data)
            file_path = str(local)
        return {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_size": stored.file_size,
            "file_path": file_path,
        }

    def by_path(self, file_path: str) -> StoredFile | None:
        """The file a download URL names (only paths getFile has given out)."""
        return self._files_by_path.get(file_path)


def document_dict(stored: StoredFile) -> JSONDict:
    """The Document object of a message."""
    document: JSONDict = {
        "file_id": stored.file_id,
        "file_unique_id": stored.file_unique_id,
        "file_size": stored.file_size,
    }
    if stored.file_name:
        document["file_name"] = stored.file_name
    if stored.mime_type:
        document["mime_type"] = stored.mime_type
    return document


def image_size(data: bytes) -> tuple[int, int]:
    """A PNG's width and height, from its header; 1×1 for anything else (the fake decodes no other format)."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
        width, height = struct.unpack(">II", data[16:24])
        return int(width), int(height)
    return 1, 1


def tiny_png() -> bytes:
    """A valid 1×1 PNG, for photos sent without their bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00\xff\xff\xff"))
        + chunk(b"IEND", b"")
    )

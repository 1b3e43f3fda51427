"""Request parameters: read from JSON, a form, multipart (with uploads) or a query string, and typed on access."""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass
from typing import Any

from aiohttp import BodyPartReader, hdrs, web

from bot.fake_api.protocol import ApiError, JSONDict

# Parameters whose values are JSON-serialized objects or arrays.
_JSON_FIELDS = frozenset(
    {
        "reply_markup",
        "entities",
        "caption_entities",
        "reply_parameters",
        "link_preview_options",
        "allowed_updates",
        "commands",
        "scope",
        "media",
    }
)

_INT_FIELDS = frozenset(
    {"chat_id", "message_id", "reply_to_message_id", "message_thread_id", "user_id", "offset", "limit", "cache_time"}
)
_BOOL_FIELDS = frozenset(
    {
        "disable_notification",
        "protect_content",
        "allow_sending_without_reply",
        "disable_content_type_detection",
        "show_alert",
        "drop_pending_updates",
        "disable_web_page_preview",
    }
)


@dataclass
class Upload:
    filename: str | None
    content_type: str | None
    data: bytes


class Params:
    """Request parameters, from JSON (typed) or from a form or query string (all strings)."""

    def __init__(self, values: JSONDict, uploads: dict[str, Upload]) -> None:
        self.values = values
        self.uploads = uploads

    def has(self, name: str) -> bool:
        return self.values.get(name) not in (None, "")

    def get_str(self, name: str, *, required: str | None = None) -> str | None:
        value = self.values.get(name)
        if value is None or value == "":
            if required:
                raise ApiError.bad_request(required)
            return None
        return value if isinstance(value, str) else json.dumps(value)

    def get_int(self, name: str, *, required: str | None = None) -> int | None:
        value = self.values.get(name)
        if value is None or value == "":
            if required:
                raise ApiError.bad_request(required)
            return None
        if isinstance(value, bool):
            return int(value)
        if isinstance(value, int):
            return value
        try:
            return int(str(value).strip())
        except ValueError:
            try:
                return int(float(str(value)))
            except ValueError:
                raise ApiError.bad_request(f"invalid {name} specified") from None

    def get_bool(self, name: str) -> bool:
        value = self.values.get(name)
        if isinstance(value, str):
            return value.strip().lower() in ("true", "1")
        return bool(value)

    def get_json(self, name: str, *, what: str | None = None) -> Any:
        value = self.values.get(name)
        if not isinstance(value, str):
            return value
        if value == "":
            return None
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            raise ApiError.bad_request(f"can't parse {what or name} JSON object") from None

    def get_chat_id(self) -> int:
        value = self.values.get("chat_id")
        if value is None or value == "":
            raise ApiError.bad_request("chat_id is empty")
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        try:
            return int(str(value).strip())
        except ValueError:
            raise ApiError.bad_request("chat not found") from None

    def input_file(self, name: str) -> Upload | str | None:
        """An uploaded file (directly or through attach://) or a string (file_id, URL)."""
        if name in self.uploads:
            return self.uploads[name]
        value = self.values.get(name)
        if not isinstance(value, str) or not value:
            return None
        if value.startswith("attach://"):
            upload = self.uploads.get(value.removeprefix("attach://"))
            if upload is None:
                raise ApiError.bad_request(f"file {value.removeprefix('attach://')} not found in the request")
            return upload
        return value

    def public(self) -> JSONDict:
        """The parameters decoded as the Bot API reads them (JSON fields parsed, numbers and flags typed).

        For the record of bot actions: python-telegram-bot sends every value as a form string.
        """
        decoded: JSONDict = {}
        for key, value in self.values.items():
            decoded[key] = value
            if not isinstance(value, str):
                continue
            if key in _JSON_FIELDS:
                with contextlib.suppress(json.JSONDecodeError):
                    decoded[key] = json.loads(value)
            elif key in _INT_FIELDS and re.fullmatch(r"-?\d+", value):
                decoded[key] = int(value)
            elif key in _BOOL_FIELDS and value in ("true", "false"):
                decoded[key] = value == "true"
        return decoded


async def read_params(request: web.Request, upload_limit: int) -> Params:
    """The parameters of a Bot API request; uploads larger than ``upload_limit`` fail with 413."""
    values: JSONDict = dict(request.query)
    uploads: dict[str, Upload] = {}
    if request.method == "POST" and request.body_exists:
        if request.content_type == "application/json":
            try:
                body = await request.json()
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise ApiError.bad_request("can't parse JSON object") from None
            if not isinstance(body, dict):
                raise ApiError.bad_request("can't parse JSON object")
            values.update(body)
        elif request.content_type == "multipart/form-data":
            await _read_multipart(request, values, uploads, upload_limit)
        else:
            form = await request.post()
            values.update({key: value for key, value in form.items() if isinstance(value, str)})
    return Params(values, uploads)


async def _read_multipart(request: web.Request, values: JSONDict, uploads: dict[str, Upload], limit: int) -> None:
    too_large = False
    reader = await request.multipart()
    async for part in reader:
        if not isinstance(part, BodyPartReader) or part.name is None:
            continue
        if part.filename is None:
            values[part.name] = await part.text()
            continue
        chunks: list[bytes] = []
        size = 0
        while chunk := await part.read_chunk(256 * 1024):
            size += len(chunk)
            if size > limit:
                too_large = True
                chunks.clear()
            elif not too_large:
                chunks.append(chunk)
        uploads[part.name] = Upload(part.filename, part.headers.get(hdrs.CONTENT_TYPE), b"".join(chunks))
    if too_large:
        raise ApiError(413, "Request Entity Too Large")

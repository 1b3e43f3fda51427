"""A fake Telegram Bot API server that speaks the real HTTP protocol.

The real python-telegram-bot ``Application`` can be pointed at it and run long polling, while a
test or a console front end plays the human on the other side::

    async with FakeBotApi() as api:
        app = (
            ApplicationBuilder()
            .token(api.token)
            .base_url(api.base_url)
            .base_file_url(api.base_file_url)
            .build()
        )
        ...  # add handlers, initialize, start, start polling
        alice = FakeUser(1001, "Alice")
        api.user_sends_text(alice, "/start")
        reply = await api.wait_for(method="sendMessage", chat_id=alice.id)

What is modelled, and how closely:

* ``POST``/``GET`` on ``/bot<token>/<method>`` with JSON, form-urlencoded, multipart or query
  string parameters (python-telegram-bot sends form data, multipart when it uploads a file, with
  every non-string value JSON-encoded). Method names are case-insensitive, as on Telegram.
* Answers in Telegram's shape: ``{"ok": true, "result": ...}`` or ``{"ok": false, "error_code":
  N, "description": "...", "parameters": {...}}`` with the HTTP status equal to ``error_code``.
  A wrong token gives 401 ``Unauthorized``, an unknown method 404 ``Not Found``.
* ``getUpdates`` long polling with ``offset`` (confirms everything below it; negative offsets
  count from the end), ``limit``, ``timeout`` and ``allowed_updates``; a second concurrent
  ``getUpdates`` ends the first with 409 ``Conflict``, as on Telegram.
* Messages, edits (``message is not modified``, the inline keyboard dropped when an edit carries
  no ``reply_markup``), deletions, callback queries, chat actions, bot commands.
* ``parse_mode`` HTML, MarkdownV2 and Markdown are parsed into plain text plus entities, and
  malformed markup fails with ``can't parse entities`` the way Telegram does; text is trimmed and
  limited to 4096 characters, captions to 1024; callback data to 64 bytes.
* Files: uploads (multipart, ``attach://``, an existing ``file_id``; ``file://`` URIs in local
  mode), ``getFile`` and downloads from ``/file/bot<token>/<file_path>``. The public API limits
  apply: bots download at most 20 MB (``file is too big``) and upload at most 50 MB. With
  ``local_mode=True`` the limits are those of a local Bot API server and ``getFile`` answers with
  an absolute path on this machine, as a local server started with ``--local`` does.

Not modelled: groups and channels, inline mode, payments, webhooks, media other than documents
(photos and stickers can be *received*), flood limits (inject them with :meth:`FakeBotApi.fail_next`).

The object is not thread-safe: call it from the event loop the server runs on.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import itertools
import json
import logging
import mimetypes
import os
import re
import secrets
import shutil
import struct
import tempfile
import time
import zlib
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple, Self
from urllib.parse import unquote, urlparse
from urllib.request import url2pathname

from aiohttp import BodyPartReader, hdrs, web

__all__ = [
    "DOWNLOAD_LIMIT",
    "LOCAL_UPLOAD_LIMIT",
    "UPLOAD_LIMIT",
    "ApiError",
    "BotAction",
    "FailedCall",
    "FakeBotApi",
    "FakeUser",
    "SentDocument",
]

log = logging.getLogger(__name__)

JSONDict = dict[str, Any]

MB = 1024 * 1024
DOWNLOAD_LIMIT = 20 * MB
"""The largest file a bot may fetch with getFile from the public Bot API."""
UPLOAD_LIMIT = 50 * MB
"""The largest file a bot may upload to the public Bot API."""
LOCAL_UPLOAD_LIMIT = 2000 * MB
"""The largest file a bot may upload to a local Bot API server."""

MAX_TEXT_LENGTH = 4096
MAX_CAPTION_LENGTH = 1024
MAX_CALLBACK_DATA_BYTES = 64
MAX_CALLBACK_ANSWER_LENGTH = 200

CONFLICT_DESCRIPTION = (
    "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running"
)
NOT_MODIFIED_DESCRIPTION = (
    "Bad Request: message is not modified: specified new message content and reply markup are exactly "
    "the same as a current content and reply markup of the message"
)

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

# Update types Telegram leaves out unless a bot asks for them in allowed_updates.
_OPT_IN_UPDATE_TYPES = frozenset({"chat_member", "message_reaction", "message_reaction_count"})

_CHAT_ACTIONS = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)

_INLINE_BUTTON_ACTIONS = (
    "url",
    "callback_data",
    "web_app",
    "login_url",
    "switch_inline_query",
    "switch_inline_query_current_chat",
    "switch_inline_query_chosen_chat",
    "copy_text",
    "callback_game",
    "pay",
)

# Real Bot API methods this fake does not implement: they fail with a 400 that says so, rather than
# the 404 Telegram gives for a method that does not exist (which python-telegram-bot reports as an
# invalid token).
_UNSUPPORTED_METHODS = (
    "logOut",
    "close",
    "setWebhook",
    "forwardMessage",
    "forwardMessages",
    "copyMessage",
    "copyMessages",
    "sendPhoto",
    "sendAudio",
    "sendVideo",
    "sendAnimation",
    "sendVoice",
    "sendVideoNote",
    "sendPaidMedia",
    "sendMediaGroup",
    "sendLocation",
    "sendVenue",
    "sendContact",
    "sendPoll",
    "sendDice",
    "sendSticker",
    "setMessageReaction",
    "getUserProfilePhotos",
    "getChat",
    "getChatMember",
    "getChatMemberCount",
    "getChatAdministrators",
    "leaveChat",
    "pinChatMessage",
    "unpinChatMessage",
    "unpinAllChatMessages",
    "setChatMenuButton",
    "getChatMenuButton",
    "setMyName",
    "getMyName",
    "setMyDescription",
    "getMyDescription",
    "setMyShortDescription",
    "getMyShortDescription",
    "setMyDefaultAdministratorRights",
    "getMyDefaultAdministratorRights",
    "editMessageMedia",
    "editMessageLiveLocation",
    "stopMessageLiveLocation",
    "stopPoll",
    "deleteMessages",
    "answerInlineQuery",
    "sendInvoice",
)


# --------------------------------------------------------------------------------------------------
# Errors


class ApiError(Exception):
    """An error answer of the Bot API, in the shape Telegram sends it."""

    def __init__(self, error_code: int, description: str, parameters: JSONDict | None = None) -> None:
        super().__init__(description)
        self.error_code = error_code
        self.description = description
        self.parameters = parameters

    def to_json(self) -> JSONDict:
        body: JSONDict = {"ok": False, "error_code": self.error_code, "description": self.description}
        if self.parameters:
            body["parameters"] = self.parameters
        return body

    @classmethod
    def bad_request(cls, message: str) -> ApiError:
        return cls(400, f"Bad Request: {message}")

    @classmethod
    def injected(cls, error_code: int, retry_after: int | None, description: str | None) -> ApiError:
        parameters: JSONDict | None = None
        if error_code == 429:
            seconds = 1 if retry_after is None else retry_after
            parameters = {"retry_after": seconds}
            description = description or f"Too Many Requests: retry after {seconds}"
        elif description is None:
            description = _DEFAULT_DESCRIPTIONS.get(error_code)
            if description is None:
                try:
                    description = HTTPStatus(error_code).phrase
                except ValueError:
                    description = f"Error {error_code}"
        return cls(error_code, description, parameters)


_DEFAULT_DESCRIPTIONS = {
    400: "Bad Request: injected failure",
    401: "Unauthorized",
    403: "Forbidden: bot was blocked by the user",
    404: "Not Found",
    409: CONFLICT_DESCRIPTION,
    500: "Internal Server Error",
    502: "Bad Gateway",
}


class _MarkupError(Exception):
    """Text in a parse mode that Telegram would refuse; the message follows "can't parse entities: "."""


# --------------------------------------------------------------------------------------------------
# Text: UTF-16 lengths, parse modes, trimming, entities of what users type


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _byte_offset(source: str, index: int) -> int:
    return len(source[:index].encode("utf-8"))


class _TextBuilder:
    """Plain text being assembled by a parser, with its length in UTF-16 code units."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.pos = 0
        self.entities: list[JSONDict] = []

    def add(self, text: str) -> None:
        self.parts.append(text)
        self.pos += _utf16_len(text)

    def entity(self, kind: str, offset: int, **extra: Any) -> None:
        if self.pos > offset:
            self.entities.append({"type": kind, "offset": offset, "length": self.pos - offset, **extra})

    def result(self) -> tuple[str, list[JSONDict]]:
        return "".join(self.parts), _sorted_entities(self.entities)


def _sorted_entities(entities: Iterable[JSONDict]) -> list[JSONDict]:
    return sorted(entities, key=lambda e: (e["offset"], -e["length"]))


_HTML_TAGS = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "tg-spoiler": "spoiler",
    "span": "spoiler",
    "a": "text_link",
    "code": "code",
    "pre": "pre",
    "blockquote": "blockquote",
    "tg-emoji": "custom_emoji",
}
_HTML_NAMED_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_HTML_ENTITY_RE = re.compile(r"&(#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[a-zA-Z]{2,8});")
_HTML_TAG_NAME_RE = re.compile(r"[a-zA-Z0-9-]*")
_HTML_ATTR_RE = re.compile(r"""([a-zA-Z_][-a-zA-Z0-9_:]*)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'<>`=]+)))?""")
_HTML_PLAIN_RE = re.compile(r"[^<&]+")


def _html_unescape_at(source: str, index: int) -> tuple[str, int]:
    """The character an HTML entity at ``source[index]`` stands for, and how many characters it takes."""
    match = _HTML_ENTITY_RE.match(source, index)
    if match:
        name = match.group(1)
        if name.startswith("#"):
            code = int(name[2:], 16) if name[1] in "xX" else int(name[1:])
            if 0 < code <= 0x10FFFF and not 0xD800 <= code <= 0xDFFF:
                return chr(code), match.end() - index
        elif name.lower() in _HTML_NAMED_ENTITIES:
            return _HTML_NAMED_ENTITIES[name.lower()], match.end() - index
    return "&", 1


def _html_unescape(text: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(text):
        if text[i] == "&":
            char, used = _html_unescape_at(text, i)
            out.append(char)
            i += used
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


@dataclass
class _OpenTag:
    name: str
    offset: int
    attrs: dict[str, str]


def parse_html(source: str) -> tuple[str, list[JSONDict]]:
    """Text and entities of a message in Telegram's HTML parse mode; raises ``_MarkupError``."""
    out = _TextBuilder()
    stack: list[_OpenTag] = []
    i, n = 0, len(source)
    while i < n:
        char = source[i]
        if char == "&":
            decoded, used = _html_unescape_at(source, i)
            out.add(decoded)
            i += used
            continue
        if char != "<":
            match = _HTML_PLAIN_RE.match(source, i)
            assert match is not None
            out.add(match.group())
            i = match.end()
            continue
        begin = i
        if source.startswith("</", i):
            end = source.find(">", i)
            if end < 0:
                raise _MarkupError(f"Unclosed end tag at byte offset {_byte_offset(source, begin)}")
            name = source[i + 2 : end].strip().lower()
            if not stack:
                raise _MarkupError(f"Unexpected end tag at byte offset {_byte_offset(source, begin)}")
            tag = stack.pop()
            if name != tag.name:
                raise _MarkupError(
                    f"Unmatched end tag at byte offset {_byte_offset(source, begin)}, "
                    f'expected "</{tag.name}>", found "</{name}>"'
                )
            _close_html_tag(out, tag, stack)
            i = end + 1
            continue
        name_match = _HTML_TAG_NAME_RE.match(source, i + 1)
        assert name_match is not None
        name = name_match.group().lower()
        if name not in _HTML_TAGS:
            raise _MarkupError(f'Unsupported start tag "{name}" at byte offset {_byte_offset(source, begin)}')
        i = name_match.end()
        attrs: dict[str, str] = {}
        while True:
            while i < n and source[i].isspace():
                i += 1
            if i >= n:
                raise _MarkupError(f"Unclosed start tag at byte offset {_byte_offset(source, begin)}")
            if source[i] == ">":
                i += 1
                break
            attr = _HTML_ATTR_RE.match(source, i)
            if attr is None:
                raise _MarkupError(
                    f'Expected equal sign in declaration of an attribute of the tag "{name}" '
                    f"at byte offset {_byte_offset(source, begin)}"
                )
            value = next((v for v in attr.groups()[1:] if v is not None), "")
            attrs[attr.group(1).lower()] = _html_unescape(value)
            i = attr.end()
        if name == "span" and attrs.get("class") != "tg-spoiler":
            raise _MarkupError(f'Tag "span" must have class "tg-spoiler" at byte offset {_byte_offset(source, begin)}')
        stack.append(_OpenTag(name, out.pos, attrs))
    if stack:
        raise _MarkupError(f'Can\'t find end tag corresponding to start tag "{stack[-1].name}"')
    return out.result()


def _close_html_tag(out: _TextBuilder, tag: _OpenTag, stack: list[_OpenTag]) -> None:
    kind = _HTML_TAGS[tag.name]
    if kind == "text_link":
        href = tag.attrs.get("href")
        if href:
            out.entity("text_link", tag.offset, url=href)
    elif kind == "custom_emoji":
        emoji_id = tag.attrs.get("emoji-id")
        if emoji_id:
            out.entity("custom_emoji", tag.offset, custom_emoji_id=emoji_id)
    elif kind == "code" and stack and stack[-1].name == "pre" and tag.attrs.get("class", "").startswith("language-"):
        # <pre><code class="language-x">…</code></pre> is one pre entity with a language.
        stack[-1].attrs["language"] = tag.attrs["class"].removeprefix("language-")
    elif kind == "pre" and tag.attrs.get("language"):
        out.entity("pre", tag.offset, language=tag.attrs["language"])
    elif kind == "blockquote" and "expandable" in tag.attrs:
        out.entity("expandable_blockquote", tag.offset)
    else:
        out.entity(kind, tag.offset)


_MDV2_RESERVED = frozenset("_*[]()~`>#+-=|{}.!")
_MDV2_NAMES = {
    "bold": "Bold",
    "italic": "Italic",
    "underline": "Underline",
    "strikethrough": "Strikethrough",
    "spoiler": "Spoiler",
    "text_link": "TextUrl",
    "custom_emoji": "CustomEmoji",
    "code": "Code",
    "pre": "Pre",
}


@dataclass
class _OpenEntity:
    kind: str
    offset: int
    byte_offset: int
    language: str | None = None


def _reserved(char: str) -> _MarkupError:
    return _MarkupError(f"Character '{char}' is reserved and must be escaped with the preceding '\\'")


def parse_markdown_v2(source: str) -> tuple[str, list[JSONDict]]:
    """Text and entities of a message in Telegram's MarkdownV2 parse mode; raises ``_MarkupError``."""
    out = _TextBuilder()
    stack: list[_OpenEntity] = []
    quote_start: int | None = None
    i, n = 0, len(source)
    while i < n:
        char = source[i]
        nxt = source[i + 1] if i + 1 < n else ""
        top = stack[-1] if stack else None
        if char == "\\" and nxt and 0 < ord(nxt) <= 126:
            out.add(nxt)
            i += 2
            continue
        if top is not None and top.kind in ("code", "pre"):
            if char == "`" and top.kind == "code":
                stack.pop()
                out.entity("code", top.offset)
                i += 1
            elif char == "`" and source.startswith("```", i):
                stack.pop()
                extra = {"language": top.language} if top.language else {}
                out.entity("pre", top.offset, **extra)
                i += 3
            else:
                out.add(char)
                i += 1
            continue
        if char == "\n" and quote_start is not None and nxt != ">":
            out.entity("blockquote", quote_start)
            quote_start = None
        if char not in _MDV2_RESERVED:
            out.add(char)
            i += 1
            continue
        if top is not None and _mdv2_closes(top.kind, source, i):
            stack.pop()
            if top.kind in ("text_link", "custom_emoji"):
                i = _mdv2_close_link(source, i + 1, out, top)
                continue
            out.entity(top.kind, top.offset)
            i += 2 if top.kind in ("underline", "spoiler") else 1
            continue
        begin = _byte_offset(source, i)
        if char == "_" and nxt == "_":
            stack.append(_OpenEntity("underline", out.pos, begin))
            i += 2
        elif char in "_*~":
            stack.append(_OpenEntity({"_": "italic", "*": "bold", "~": "strikethrough"}[char], out.pos, begin))
            i += 1
        elif char == "|" and nxt == "|":
            stack.append(_OpenEntity("spoiler", out.pos, begin))
            i += 2
        elif char == "[":
            stack.append(_OpenEntity("text_link", out.pos, begin))
            i += 1
        elif char == "!" and nxt == "[":
            stack.append(_OpenEntity("custom_emoji", out.pos, begin))
            i += 2
        elif char == "`" and source.startswith("```", i):
            i += 3
            line_end = source.find("\n", i)
            language = None
            if line_end >= 0 and line_end > i and not any(c.isspace() for c in source[i:line_end]):
                language = source[i:line_end]
                i = line_end + 1
            elif line_end == i:
                i += 1
            stack.append(_OpenEntity("pre", out.pos, begin, language))
        elif char == "`":
            stack.append(_OpenEntity("code", out.pos, begin))
            i += 1
        elif char == ">" and (i == 0 or source[i - 1] == "\n") and not stack:
            if quote_start is None:
                quote_start = out.pos
            i += 1
        else:
            raise _reserved(char)
    if stack:
        top = stack[-1]
        raise _MarkupError(f"Can't find end of {_MDV2_NAMES[top.kind]} entity at byte offset {top.byte_offset}")
    if quote_start is not None:
        out.entity("blockquote", quote_start)
    return out.result()


def _mdv2_closes(kind: str, source: str, i: int) -> bool:
    char = source[i]
    nxt = source[i + 1] if i + 1 < len(source) else ""
    if kind == "bold":
        return char == "*"
    if kind == "italic":
        return char == "_" and nxt != "_"
    if kind == "underline":
        return char == "_" and nxt == "_"
    if kind == "strikethrough":
        return char == "~"
    if kind == "spoiler":
        return char == "|" and nxt == "|"
    return kind in ("text_link", "custom_emoji") and char == "]"


def _mdv2_close_link(source: str, i: int, out: _TextBuilder, entity: _OpenEntity) -> int:
    """Read the ``(url)`` after ``[text]``; return the index after it."""
    if not source.startswith("(", i):
        return i
    url: list[str] = []
    j = i + 1
    while j < len(source) and source[j] != ")":
        if source[j] == "\\" and j + 1 < len(source):
            j += 1
        url.append(source[j])
        j += 1
    if j >= len(source):
        raise _MarkupError(f"Can't find end of a URL at byte offset {_byte_offset(source, i + 1)}")
    target = "".join(url)
    if entity.kind == "custom_emoji":
        match = re.fullmatch(r"tg://emoji\?id=(\d+)", target)
        if match is None:
            raise _MarkupError(f"Custom emoji URL must have scheme tg at byte offset {_byte_offset(source, i + 1)}")
        out.entity("custom_emoji", entity.offset, custom_emoji_id=match.group(1))
    elif target:
        out.entity("text_link", entity.offset, url=target)
    return j + 1


def parse_markdown(source: str) -> tuple[str, list[JSONDict]]:
    """Text and entities of a message in the legacy Markdown parse mode; raises ``_MarkupError``."""
    out = _TextBuilder()
    i, n = 0, len(source)
    while i < n:
        char = source[i]
        if char == "\\" and i + 1 < n and source[i + 1] in "_*`[":
            out.add(source[i + 1])
            i += 2
            continue
        if char not in "_*`[":
            out.add(char)
            i += 1
            continue
        unclosed = _MarkupError(f"Can't find end of the entity starting at byte offset {_byte_offset(source, i)}")
        start = out.pos
        if char == "[":
            end = source.find("]", i + 1)
            if end < 0:
                raise unclosed
            out.add(source[i + 1 : end])
            i = end + 1
            if source.startswith("(", i):
                close = source.find(")", i + 1)
                if close < 0:
                    raise unclosed
                url = source[i + 1 : close]
                if url:
                    out.entity("text_link", start, url=url)
                i = close + 1
        elif source.startswith("```", i):
            end = source.find("```", i + 3)
            if end < 0:
                raise unclosed
            body = source[i + 3 : end]
            language = None
            first_line, newline, rest = body.partition("\n")
            if newline and first_line and not any(c.isspace() for c in first_line):
                language, body = first_line, rest
            out.add(body)
            out.entity("pre", start, **({"language": language} if language else {}))
            i = end + 3
        else:
            end = source.find(char, i + 1)
            if end < 0:
                raise unclosed
            out.add(source[i + 1 : end])
            out.entity({"*": "bold", "_": "italic", "`": "code"}[char], start)
            i = end + 1
    return out.result()


_PARSERS: dict[str, Callable[[str], tuple[str, list[JSONDict]]]] = {
    "html": parse_html,
    "markdownv2": parse_markdown_v2,
    "markdown": parse_markdown,
}


def _trim(text: str, entities: list[JSONDict]) -> tuple[str, list[JSONDict]]:
    """Strip surrounding whitespace as Telegram does, moving and clipping entities to match."""
    trimmed = text.strip()
    if trimmed == text or not entities:
        return trimmed, entities
    shift = _utf16_len(text[: len(text) - len(text.lstrip())])
    end = _utf16_len(trimmed)
    kept = []
    for entity in entities:
        start = max(entity["offset"] - shift, 0)
        stop = min(entity["offset"] + entity["length"] - shift, end)
        if stop > start:
            kept.append({**entity, "offset": start, "length": stop - start})
    return trimmed, kept


_COMMAND_RE = re.compile(r"(?<![\w/])/[a-zA-Z0-9_]{1,64}(?:@[a-zA-Z0-9_]{3,32})?(?![\w/])")


def _user_entities(text: str) -> list[JSONDict]:
    """Entities a Telegram client sends along with what a person types (bot commands)."""
    return [
        {"type": "bot_command", "offset": _utf16_len(text[: m.start()]), "length": _utf16_len(m.group())}
        for m in _COMMAND_RE.finditer(text)
    ]


# --------------------------------------------------------------------------------------------------
# Public data types


@dataclass(frozen=True)
class FakeUser:
    """A person talking to the bot in a private chat (whose chat id is the user id)."""

    id: int
    first_name: str
    language_code: str = "en"
    username: str | None = None
    last_name: str | None = None

    def to_dict(self) -> JSONDict:
        user: JSONDict = {"id": self.id, "is_bot": False, "first_name": self.first_name}
        if self.last_name:
            user["last_name"] = self.last_name
        if self.username:
            user["username"] = self.username
        if self.language_code:
            user["language_code"] = self.language_code
        return user

    def chat_dict(self) -> JSONDict:
        chat: JSONDict = {"id": self.id, "type": "private", "first_name": self.first_name}
        if self.last_name:
            chat["last_name"] = self.last_name
        if self.username:
            chat["username"] = self.username
        return chat


class SentDocument(NamedTuple):
    """A document the bot sent: its name, its bytes and its caption (plain text, after parsing)."""

    file_name: str
    data: bytes
    caption: str | None


@dataclass(frozen=True)
class BotAction:
    """One successful call by the bot that changed what the user sees (or answered them).

    ``params`` are the decoded request parameters (JSON fields parsed, uploads left out),
    ``result`` what the API answered. ``text`` is the message text after parsing (the caption for
    documents, the notification text for answerCallbackQuery).
    """

    method: str
    params: JSONDict
    result: Any
    chat_id: int | None = None
    message_id: int | None = None
    text: str | None = None
    reply_markup: JSONDict | None = None
    document: SentDocument | None = None


@dataclass(frozen=True)
class FailedCall:
    """A call the API answered with an error (``injected`` when it came from :meth:`FakeBotApi.fail_next`)."""

    method: str
    error_code: int
    description: str
    params: JSONDict
    injected: bool = False


# --------------------------------------------------------------------------------------------------
# Server state


@dataclass
class _StoredFile:
    file_id: str
    file_unique_id: str
    kind: str  # "document", "photo", "sticker"
    data: bytes
    file_size: int
    file_name: str | None = None
    mime_type: str | None = None
    file_path: str | None = None


@dataclass
class _Chat:
    user: FakeUser
    messages: dict[int, JSONDict] = field(default_factory=dict)
    next_message_id: int = 1
    blocked: bool = False
    reply_keyboard: JSONDict | None = None


@dataclass
class _CallbackQuery:
    id: str
    chat_id: int
    message_id: int
    answered: bool = False


@dataclass
class _Upload:
    filename: str | None
    content_type: str | None
    data: bytes


@dataclass
class _Failure:
    error_code: int
    retry_after: int | None
    description: str | None


class _Params:
    """Request parameters, from JSON (typed) or from a form or query string (all strings)."""

    def __init__(self, values: JSONDict, uploads: dict[str, _Upload]) -> None:
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

    def input_file(self, name: str) -> _Upload | str | None:
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


def _tiny_png() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00\xff\xff\xff"))
        + chunk(b"IEND", b"")
    )


_FILE_ID_PREFIX = {"document": "BQACAgIAAxkBAA", "photo": "AgACAgIAAxkBAA", "sticker": "CAACAgIAAxkBAA"}
_FILE_FOLDER = {"document": "documents", "photo": "photos", "sticker": "stickers"}
_FILE_EXTENSION = {"photo": ".jpg", "sticker": ".webp"}

Handler = Callable[[_Params], Awaitable[Any]]
Listener = Callable[[BotAction], None]


class FakeBotApi:
    """An in-process Bot API server on 127.0.0.1 plus the user side of the conversation.

    ``base_url`` and ``base_file_url`` are meant for python-telegram-bot's
    ``ApplicationBuilder().base_url(...)`` / ``.base_file_url(...)``, which append the token.
    """

    def __init__(
        self,
        token: str = "123456789:TEST-fake-bot-api-token",
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        bot_username: str = "convbot_test_bot",
        bot_first_name: str = "ConvBot",
        local_mode: bool = False,
    ) -> None:
        self.token = token
        self.local_mode = local_mode
        self._host = host
        self._requested_port = port
        self._port: int | None = None
        self._runner: web.AppRunner | None = None
        self._local_dir: Path | None = None
        self._closing = False

        bot_id_text = token.split(":", 1)[0]
        self.bot_user: JSONDict = {
            "id": int(bot_id_text) if bot_id_text.isdigit() else 123456789,
            "is_bot": True,
            "first_name": bot_first_name,
            "username": bot_username,
        }

        # What the bot did, for tests and the console.
        self.sent: list[BotAction] = []
        self.failed: list[FailedCall] = []
        self.calls: Counter[str] = Counter()
        self.downloads: list[str] = []
        self.server_errors: list[BaseException] = []
        self._listeners: list[Listener] = []
        self._actions_changed = asyncio.Event()

        # Conversation state.
        self._chats: dict[int, _Chat] = {}
        self._files: dict[str, _StoredFile] = {}
        self._files_by_path: dict[str, _StoredFile] = {}
        self._callbacks: dict[str, _CallbackQuery] = {}
        self._commands: dict[tuple[str, str], list[JSONDict]] = {}
        self._failures: dict[str, deque[_Failure]] = {}
        self._ids = itertools.count(1)

        # Updates and long polling.
        self._updates: list[JSONDict] = []
        self._next_update_id = 1
        self._allowed_updates: frozenset[str] | None = None
        self._poll_generation = 0
        self._waiting_polls = 0
        self._updates_changed = asyncio.Event()

        self._handlers: dict[str, Handler] = {
            "getMe": self._get_me,
            "deleteWebhook": self._delete_webhook,
            "getWebhookInfo": self._get_webhook_info,
            "getUpdates": self._get_updates,
            "sendMessage": self._send_message,
            "editMessageText": self._edit_message_text,
            "editMessageCaption": self._edit_message_caption,
            "editMessageReplyMarkup": self._edit_message_reply_markup,
            "deleteMessage": self._delete_message,
            "answerCallbackQuery": self._answer_callback_query,
            "sendDocument": self._send_document,
            "getFile": self._get_file,
            "sendChatAction": self._send_chat_action,
            "setMyCommands": self._set_my_commands,
            "getMyCommands": self._get_my_commands,
            "deleteMyCommands": self._delete_my_commands,
        }
        for name in _UNSUPPORTED_METHODS:
            self._handlers.setdefault(name, self._unsupported(name))
        self._by_lower = {name.lower(): name for name in self._handlers}

    # ---------------------------------------------------------------------------------------------
    # Lifecycle

    async def start(self) -> None:
        """Listen on the host and port given (port 0: a free one)."""
        if self._runner is not None:
            raise RuntimeError("FakeBotApi is already running")
        app = web.Application(client_max_size=10 * MB)
        app.router.add_route("*", "/bot{token}/{method}", self._handle_method)
        app.router.add_route("GET", "/file/bot{token}/{file_path:.+}", self._handle_file)
        app.router.add_route("*", "/{tail:.*}", self._handle_not_found)
        runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=2.0, access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self._host, self._requested_port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._port = int(runner.addresses[0][1])
        self._closing = False
        if self.local_mode:
            self._local_dir = Path(tempfile.mkdtemp(prefix="fake-bot-api-"))

    async def stop(self) -> None:
        """Release pending long polls, close every connection and stop listening."""
        if self._runner is None:
            return
        self._closing = True
        self._notify_updates()
        runner, self._runner = self._runner, None
        try:
            await runner.cleanup()
        finally:
            if self._local_dir is not None:
                shutil.rmtree(self._local_dir, ignore_errors=True)
                self._local_dir = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("FakeBotApi is not started")
        return self._port

    @property
    def waiting_polls(self) -> int:
        """How many getUpdates requests are being held open right now (1 while a bot is polling)."""
        return self._waiting_polls

    @property
    def root_url(self) -> str:
        return f"http://{self._host}:{self.port}"

    @property
    def base_url(self) -> str:
        """For ``ApplicationBuilder().base_url()``: python-telegram-bot appends the token."""
        return f"{self.root_url}/bot"

    @property
    def base_file_url(self) -> str:
        """For ``ApplicationBuilder().base_file_url()``: python-telegram-bot appends the token."""
        return f"{self.root_url}/file/bot"

    # ---------------------------------------------------------------------------------------------
    # The user side

    def add_user(self, user: FakeUser) -> None:
        """Open the private chat with ``user`` (as if they had started the bot) without a message."""
        self._chat_of(user)

    def user_sends_text(self, user: FakeUser | int, text: str, *, reply_to: int | None = None) -> JSONDict:
        """The user types ``text``; commands get ``bot_command`` entities. Returns the message."""
        chat = self._chat_of(user)
        message = self._new_user_message(chat, reply_to)
        message["text"] = text
        entities = _user_entities(text)
        if entities:
            message["entities"] = entities
        return self._deliver_user_message(chat, message)

    def user_sends_document(
        self,
        user: FakeUser | int,
        content: bytes | str | os.PathLike[str],
        file_name: str | None = None,
        mime_type: str | None = None,
        *,
        caption: str | None = None,
        file_size: int | None = None,
    ) -> JSONDict:
        """The user sends a file (bytes or a path). Returns the message.

        ``file_size`` declares a size other than ``len(content)``, to exercise the size limits
        without building the bytes: what is downloaded is ``content`` itself.
        """
        if isinstance(content, bytes | bytearray):
            data = bytes(content)
            name = file_name or "document"
        else:
            path = Path(content)
            data = path.read_bytes()
            name = file_name or path.name
        mime = mime_type or mimetypes.guess_type(name)[0] or "application/octet-stream"
        stored = self._store_file("document", data, file_name=name, mime_type=mime, file_size=file_size)
        chat = self._chat_of(user)
        message = self._new_user_message(chat, None)
        message["document"] = self._document_dict(stored)
        if caption:
            message["caption"] = caption
        return self._deliver_user_message(chat, message)

    def user_sends_photo(
        self,
        user: FakeUser | int,
        data: bytes | None = None,
        *,
        caption: str | None = None,
        width: int = 800,
        height: int = 600,
    ) -> JSONDict:
        """The user sends a photo (Telegram delivers several sizes; here a thumbnail and the full one)."""
        content = _tiny_png() if data is None else data
        scale = max(width, height, 1)
        sizes = []
        for w, h in ((max(1, width * 90 // scale), max(1, height * 90 // scale)), (width, height)):
            stored = self._store_file("photo", content)
            sizes.append(
                {
                    "file_id": stored.file_id,
                    "file_unique_id": stored.file_unique_id,
                    "file_size": stored.file_size,
                    "width": w,
                    "height": h,
                }
            )
        chat = self._chat_of(user)
        message = self._new_user_message(chat, None)
        message["photo"] = sizes
        if caption:
            message["caption"] = caption
        return self._deliver_user_message(chat, message)

    def user_sends_sticker(self, user: FakeUser | int, emoji: str = "👍") -> JSONDict:
        """The user sends a (static, regular) sticker."""
        stored = self._store_file("sticker", b"RIFF\x0c\x00\x00\x00WEBPVP8 ")
        chat = self._chat_of(user)
        message = self._new_user_message(chat, None)
        message["sticker"] = {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "type": "regular",
            "width": 512,
            "height": 512,
            "is_animated": False,
            "is_video": False,
            "emoji": emoji,
            "file_size": stored.file_size,
        }
        return self._deliver_user_message(chat, message)

    def user_presses_button(self, user: FakeUser | int, message_id: int, callback_data: str) -> str:
        """The user taps an inline button of a message. Returns the callback query id.

        Raises ``ValueError`` when the message has no such button: a client could not send that.
        """
        chat = self._chat_of(user)
        message = chat.messages.get(message_id)
        if message is None:
            raise ValueError(f"no message {message_id} in chat {chat.user.id}")
        rows = (message.get("reply_markup") or {}).get("inline_keyboard", [])
        if not any(button.get("callback_data") == callback_data for row in rows for button in row):
            raise ValueError(f"message {message_id} has no button with callback_data {callback_data!r}")
        query_id = str(4_000_000_000_000_000_000 + next(self._ids))
        self._callbacks[query_id] = _CallbackQuery(query_id, chat.user.id, message_id)
        self._enqueue(
            "callback_query",
            {
                "id": query_id,
                "from": chat.user.to_dict(),
                "message": copy.deepcopy(message),
                "chat_instance": str(-(chat.user.id * 7919 + self.bot_user["id"])),
                "data": callback_data,
            },
        )
        return query_id

    def user_blocks_bot(self, user: FakeUser | int) -> None:
        """From now on the bot's messages to this user fail with 403 (until ``user_unblocks_bot``)."""
        self._set_blocked(self._chat_of(user), True)

    def user_unblocks_bot(self, user: FakeUser | int) -> None:
        self._set_blocked(self._chat_of(user), False)

    # ---------------------------------------------------------------------------------------------
    # Observing the bot

    def messages_in(self, chat_id: int) -> list[JSONDict]:
        """Every message of a chat as it stands now (edits applied, deleted ones gone), oldest first."""
        chat = self._chats.get(chat_id)
        if chat is None:
            return []
        return [copy.deepcopy(chat.messages[mid]) for mid in sorted(chat.messages)]

    def message(self, chat_id: int, message_id: int) -> JSONDict | None:
        chat = self._chats.get(chat_id)
        found = chat.messages.get(message_id) if chat else None
        return copy.deepcopy(found) if found is not None else None

    def reply_keyboard(self, chat_id: int) -> JSONDict | None:
        """The custom reply keyboard the bot last set in a chat, if any."""
        chat = self._chats.get(chat_id)
        return copy.deepcopy(chat.reply_keyboard) if chat else None

    def documents_sent(self, chat_id: int) -> list[SentDocument]:
        return [a.document for a in self.sent if a.document is not None and a.chat_id == chat_id]

    def commands(self, scope: JSONDict | None = None, language_code: str = "") -> list[JSONDict]:
        """The command list the bot set for a scope (default scope) and language."""
        return copy.deepcopy(self._commands.get((self._scope_key(scope), language_code), []))

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(action)`` for every bot action as it is recorded (console mode)."""
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        self._listeners.remove(listener)

    async def wait_for(
        self,
        predicate: Callable[[BotAction], bool] | None = None,
        *,
        method: str | None = None,
        chat_id: int | None = None,
        timeout: float = 5.0,
        since: int = 0,
    ) -> BotAction:
        """The first action in ``sent[since:]`` matching all of the filters, waiting for it if needed.

        Raises ``TimeoutError`` (listing what the bot did do) when none comes within ``timeout``.
        """

        def matches(action: BotAction) -> bool:
            return (
                (method is None or action.method == method)
                and (chat_id is None or action.chat_id == chat_id)
                and (predicate is None or predicate(action))
            )

        index = since
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            while index < len(self.sent):
                action = self.sent[index]
                index += 1
                if matches(action):
                    return action
            remaining = deadline - loop.time()
            if remaining <= 0:
                seen = ", ".join(f"{a.method}({a.chat_id}: {a.text!r})" for a in self.sent[since:]) or "nothing"
                failed = ", ".join(f"{f.method}: {f.description}" for f in self.failed)
                raise TimeoutError(
                    f"no matching bot action within {timeout}s; the bot did: {seen}"
                    + (f"; failed calls: {failed}" if failed else "")
                )
            changed = self._actions_changed
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await changed.wait()

    # ---------------------------------------------------------------------------------------------
    # Failure injection

    def fail_next(
        self,
        method: str,
        error_code: int = 429,
        retry_after: int | None = 1,
        description: str | None = None,
        *,
        times: int = 1,
    ) -> None:
        """Make the next ``times`` calls of ``method`` fail with ``error_code`` in Telegram's shape.

        A 429 carries ``parameters.retry_after`` and the description "Too Many Requests: retry after
        N"; other codes get Telegram's usual description unless one is given.
        """
        name = self._by_lower.get(method.lower())
        if name is None:
            raise ValueError(f"unknown Bot API method {method!r}")
        queue = self._failures.setdefault(name, deque())
        queue.extend(_Failure(error_code, retry_after, description) for _ in range(times))

    # ---------------------------------------------------------------------------------------------
    # HTTP

    async def _handle_method(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] != self.token:
            return self._error_response(ApiError(401, "Unauthorized"))
        requested = request.match_info["method"]
        name = self._by_lower.get(requested.lower())
        self.calls[name or requested] += 1
        if name is None:
            return self._error_response(ApiError(404, "Not Found"))
        params = _Params({}, {})
        try:
            params = await self._read_params(request)
            failures = self._failures.get(name)
            if failures:
                failure = failures.popleft()
                error = ApiError.injected(failure.error_code, failure.retry_after, failure.description)
                self.failed.append(FailedCall(name, error.error_code, error.description, params.public(), True))
                return self._error_response(error)
            result = await self._handlers[name](params)
        except ApiError as error:
            self.failed.append(FailedCall(name, error.error_code, error.description, params.public()))
            return self._error_response(error)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug in the fake: answer like Telegram's 500, keep it for the tests
            log.exception("fake Bot API failed on %s", name)
            self.server_errors.append(exc)
            return self._error_response(ApiError(500, "Internal Server Error"))
        return web.json_response({"ok": True, "result": result})

    async def _handle_file(self, request: web.Request) -> web.StreamResponse:
        stored = self._files_by_path.get(request.match_info["file_path"])
        if request.match_info["token"] != self.token or stored is None:
            return self._error_response(ApiError(404, "Not Found"))
        self.downloads.append(request.match_info["file_path"])
        return web.Response(body=stored.data, content_type="application/octet-stream")

    async def _handle_not_found(self, request: web.Request) -> web.StreamResponse:
        return self._error_response(ApiError(404, "Not Found"))

    @staticmethod
    def _error_response(error: ApiError) -> web.Response:
        return web.json_response(error.to_json(), status=error.error_code)

    async def _read_params(self, request: web.Request) -> _Params:
        values: JSONDict = dict(request.query)
        uploads: dict[str, _Upload] = {}
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
                await self._read_multipart(request, values, uploads)
            else:
                form = await request.post()
                values.update({key: value for key, value in form.items() if isinstance(value, str)})
        return _Params(values, uploads)

    async def _read_multipart(self, request: web.Request, values: JSONDict, uploads: dict[str, _Upload]) -> None:
        limit = LOCAL_UPLOAD_LIMIT if self.local_mode else UPLOAD_LIMIT
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
            uploads[part.name] = _Upload(part.filename, part.headers.get(hdrs.CONTENT_TYPE), b"".join(chunks))
        if too_large:
            raise ApiError(413, "Request Entity Too Large")

    # ---------------------------------------------------------------------------------------------
    # Bot API methods

    def _unsupported(self, name: str) -> Handler:
        async def handler(params: _Params) -> Any:
            raise ApiError.bad_request(f"method {name} is not supported by the fake Bot API")

        return handler

    async def _get_me(self, params: _Params) -> Any:
        return {
            **self.bot_user,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    async def _delete_webhook(self, params: _Params) -> Any:
        if params.get_bool("drop_pending_updates"):
            self._updates.clear()
        return True

    async def _get_webhook_info(self, params: _Params) -> Any:
        return {"url": "", "has_custom_certificate": False, "pending_update_count": len(self._updates)}

    async def _get_updates(self, params: _Params) -> Any:
        offset = params.get_int("offset")
        limit = min(max(params.get_int("limit") or 100, 1), 100)
        try:
            timeout = max(float(params.get_str("timeout") or 0), 0.0)
        except ValueError:
            raise ApiError.bad_request("invalid timeout specified") from None
        allowed = params.get_json("allowed_updates")
        if isinstance(allowed, list):
            self._allowed_updates = frozenset(str(kind) for kind in allowed) or None

        # A newer getUpdates ends an older one that is still waiting, as on Telegram.
        self._poll_generation += 1
        generation = self._poll_generation
        self._notify_updates()

        if offset is not None:
            if offset < 0:
                del self._updates[: max(len(self._updates) + offset, 0)]
            else:
                self._updates = [u for u in self._updates if u["update_id"] >= offset]

        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if generation != self._poll_generation:
                raise ApiError(409, CONFLICT_DESCRIPTION)
            if self._updates or self._closing:
                return copy.deepcopy(self._updates[:limit])
            remaining = deadline - loop.time()
            if remaining <= 0:
                return []
            changed = self._updates_changed
            self._waiting_polls += 1
            try:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(remaining):
                        await changed.wait()
            finally:
                self._waiting_polls -= 1

    async def _send_message(self, params: _Params) -> Any:
        chat = self._chat_for_sending(params)
        text, entities = self._formatted(params, "text", "entities")
        if not text:
            raise ApiError.bad_request("message text is empty")
        if len(text) > MAX_TEXT_LENGTH:
            raise ApiError.bad_request("message is too long")
        markup = self._reply_markup(params, chat)
        message = self._new_bot_message(chat, params)
        message["text"] = text
        if entities:
            message["entities"] = entities
        if markup:
            message["reply_markup"] = markup
        chat.messages[message["message_id"]] = message
        return self._record(
            "sendMessage",
            params,
            message,
            chat=chat.user.id,
            message_id=message["message_id"],
            text=text,
            markup=markup,
        )

    async def _send_document(self, params: _Params) -> Any:
        chat = self._chat_for_sending(params)
        document = params.input_file("document")
        if document is None:
            raise ApiError.bad_request("there is no document in the request")
        stored = self._bot_file(document)
        caption, entities = self._formatted(params, "caption", "caption_entities")
        if len(caption) > MAX_CAPTION_LENGTH:
            raise ApiError.bad_request("message caption is too long")
        markup = self._reply_markup(params, chat)
        message = self._new_bot_message(chat, params)
        message["document"] = self._document_dict(stored)
        if caption:
            message["caption"] = caption
        if entities:
            message["caption_entities"] = entities
        if markup:
            message["reply_markup"] = markup
        chat.messages[message["message_id"]] = message
        sent = SentDocument(stored.file_name or "document", stored.data, caption or None)
        return self._record(
            "sendDocument",
            params,
            message,
            chat=chat.user.id,
            message_id=message["message_id"],
            text=caption or None,
            markup=markup,
            document=sent,
        )

    async def _edit_message_text(self, params: _Params) -> Any:
        chat, message = self._message_to_edit(params)
        if "text" not in message:
            raise ApiError.bad_request("there is no text in the message to edit")
        text, entities = self._formatted(params, "text", "entities")
        if not text:
            raise ApiError.bad_request("message text is empty")
        if len(text) > MAX_TEXT_LENGTH:
            raise ApiError.bad_request("MESSAGE_TOO_LONG")
        markup = self._inline_markup(params)
        if (
            text == message["text"]
            and entities == message.get("entities", [])
            and markup == message.get("reply_markup")
        ):
            raise ApiError(400, NOT_MODIFIED_DESCRIPTION)
        message["text"] = text
        self._set_optional(message, "entities", entities)
        return self._record_edit("editMessageText", params, chat, message, markup, text)

    async def _edit_message_caption(self, params: _Params) -> Any:
        chat, message = self._message_to_edit(params)
        if not any(kind in message for kind in ("document", "photo")):
            raise ApiError.bad_request("there is no caption in the message to edit")
        caption, entities = self._formatted(params, "caption", "caption_entities")
        if len(caption) > MAX_CAPTION_LENGTH:
            raise ApiError.bad_request("message caption is too long")
        markup = self._inline_markup(params)
        if (
            caption == message.get("caption", "")
            and entities == message.get("caption_entities", [])
            and markup == message.get("reply_markup")
        ):
            raise ApiError(400, NOT_MODIFIED_DESCRIPTION)
        self._set_optional(message, "caption", caption)
        self._set_optional(message, "caption_entities", entities)
        return self._record_edit("editMessageCaption", params, chat, message, markup, caption or None)

    async def _edit_message_reply_markup(self, params: _Params) -> Any:
        chat, message = self._message_to_edit(params)
        markup = self._inline_markup(params)
        if markup == message.get("reply_markup"):
            raise ApiError(400, NOT_MODIFIED_DESCRIPTION)
        return self._record_edit("editMessageReplyMarkup", params, chat, message, markup, message.get("text"))

    async def _delete_message(self, params: _Params) -> Any:
        chat = self._existing_chat(params.get_chat_id())
        message_id = params.get_int("message_id", required="message identifier is not specified")
        assert message_id is not None
        if chat.messages.pop(message_id, None) is None:
            raise ApiError.bad_request("message to delete not found")
        return self._record("deleteMessage", params, True, chat=chat.user.id, message_id=message_id)

    async def _answer_callback_query(self, params: _Params) -> Any:
        query_id = params.get_str("callback_query_id", required="query_id is empty")
        query = self._callbacks.get(query_id or "")
        if query is None or query.answered:
            raise ApiError.bad_request("query is too old and response timeout expired or query ID is invalid")
        text = params.get_str("text")
        if text is not None and len(text) > MAX_CALLBACK_ANSWER_LENGTH:
            raise ApiError.bad_request("MESSAGE_TOO_LONG")
        query.answered = True
        return self._record(
            "answerCallbackQuery", params, True, chat=query.chat_id, message_id=query.message_id, text=text
        )

    async def _get_file(self, params: _Params) -> Any:
        file_id = params.get_str("file_id", required="file_id not specified")
        stored = self._files.get(file_id or "")
        if stored is None:
            raise ApiError.bad_request("invalid file_id")
        if not self.local_mode and stored.file_size > DOWNLOAD_LIMIT:
            raise ApiError.bad_request("file is too big")
        if stored.file_path is None:
            extension = Path(stored.file_name or "").suffix or _FILE_EXTENSION.get(stored.kind, "")
            stored.file_path = f"{_FILE_FOLDER[stored.kind]}/file_{next(self._ids)}{extension}"
            self._files_by_path[stored.file_path] = stored
        file_path = stored.file_path
        if self.local_mode and self._local_dir is not None:
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

    async def _send_chat_action(self, params: _Params) -> Any:
        chat = self._chat_for_sending(params)
        action = params.get_str("action", required="action is empty")
        if action not in _CHAT_ACTIONS:
            raise ApiError.bad_request("wrong parameter action in request")
        return self._record("sendChatAction", params, True, chat=chat.user.id, text=action)

    async def _set_my_commands(self, params: _Params) -> Any:
        commands = params.get_json("commands", what="commands")
        if not isinstance(commands, list) or len(commands) > 100:
            raise ApiError.bad_request("can't parse commands JSON object")
        cleaned = []
        for entry in commands:
            if not isinstance(entry, dict):
                raise ApiError.bad_request("can't parse BotCommand")
            command = str(entry.get("command", "")).removeprefix("/")
            description = str(entry.get("description", "")).strip()
            if not re.fullmatch(r"[a-z0-9_]{1,32}", command):
                raise ApiError.bad_request("BOT_COMMAND_INVALID")
            if not 1 <= len(description) <= 256:
                raise ApiError.bad_request("BOT_COMMAND_DESCRIPTION_INVALID")
            cleaned.append({"command": command, "description": description})
        key = (self._scope_key(params.get_json("scope")), params.get_str("language_code") or "")
        if cleaned:
            self._commands[key] = cleaned
        else:
            self._commands.pop(key, None)
        return self._record("setMyCommands", params, True)

    async def _get_my_commands(self, params: _Params) -> Any:
        key = (self._scope_key(params.get_json("scope")), params.get_str("language_code") or "")
        return copy.deepcopy(self._commands.get(key, []))

    async def _delete_my_commands(self, params: _Params) -> Any:
        key = (self._scope_key(params.get_json("scope")), params.get_str("language_code") or "")
        self._commands.pop(key, None)
        return self._record("deleteMyCommands", params, True)

    # ---------------------------------------------------------------------------------------------
    # Helpers: chats and messages

    def _chat_of(self, user: FakeUser | int) -> _Chat:
        if isinstance(user, FakeUser):
            chat = self._chats.get(user.id)
            if chat is None:
                chat = self._chats[user.id] = _Chat(user)
            return chat
        chat = self._chats.get(user)
        if chat is None:
            raise ValueError(f"no user with id {user}: pass a FakeUser the first time")
        return chat

    def _existing_chat(self, chat_id: int) -> _Chat:
        chat = self._chats.get(chat_id)
        if chat is None:
            raise ApiError.bad_request("chat not found")
        return chat

    def _chat_for_sending(self, params: _Params) -> _Chat:
        chat = self._existing_chat(params.get_chat_id())
        if chat.blocked:
            raise ApiError(403, "Forbidden: bot was blocked by the user")
        return chat

    def _set_blocked(self, chat: _Chat, blocked: bool) -> None:
        if chat.blocked == blocked:
            return
        chat.blocked = blocked
        bot = dict(self.bot_user)
        old, new = ("member", "kicked") if blocked else ("kicked", "member")
        new_member: JSONDict = {"status": new, "user": bot}
        if blocked:
            new_member["until_date"] = 0
        self._enqueue(
            "my_chat_member",
            {
                "chat": chat.user.chat_dict(),
                "from": chat.user.to_dict(),
                "date": int(time.time()),
                "old_chat_member": {"status": old, "user": bot, **({} if blocked else {"until_date": 0})},
                "new_chat_member": new_member,
            },
        )

    def _new_user_message(self, chat: _Chat, reply_to: int | None) -> JSONDict:
        message: JSONDict = {
            "message_id": self._take_message_id(chat),
            "from": chat.user.to_dict(),
            "chat": chat.user.chat_dict(),
            "date": int(time.time()),
        }
        if reply_to is not None:
            replied = chat.messages.get(reply_to)
            if replied is None:
                raise ValueError(f"no message {reply_to} in chat {chat.user.id} to reply to")
            message["reply_to_message"] = self._without_reply(replied)
        return message

    def _deliver_user_message(self, chat: _Chat, message: JSONDict) -> JSONDict:
        chat.messages[message["message_id"]] = message
        self._enqueue("message", copy.deepcopy(message))
        return copy.deepcopy(message)

    def _new_bot_message(self, chat: _Chat, params: _Params) -> JSONDict:
        reply_to = self._reply_target(chat, params)
        message: JSONDict = {
            "message_id": self._take_message_id(chat),
            "from": dict(self.bot_user),
            "chat": chat.user.chat_dict(),
            "date": int(time.time()),
        }
        if reply_to is not None:
            message["reply_to_message"] = self._without_reply(reply_to)
        return message

    def _reply_target(self, chat: _Chat, params: _Params) -> JSONDict | None:
        reply = params.get_json("reply_parameters", what="reply parameters")
        allow_missing = params.get_bool("allow_sending_without_reply")
        if isinstance(reply, dict):
            target = reply.get("message_id")
            allow_missing = allow_missing or bool(reply.get("allow_sending_without_reply"))
        else:
            target = params.get_int("reply_to_message_id")
        if target is None:
            return None
        replied = chat.messages.get(int(target))
        if replied is None and not allow_missing:
            raise ApiError.bad_request("message to be replied not found")
        return replied

    @staticmethod
    def _without_reply(message: JSONDict) -> JSONDict:
        quoted = copy.deepcopy(message)
        quoted.pop("reply_to_message", None)
        return quoted

    @staticmethod
    def _take_message_id(chat: _Chat) -> int:
        message_id = chat.next_message_id
        chat.next_message_id += 1
        return message_id

    def _message_to_edit(self, params: _Params) -> tuple[_Chat, JSONDict]:
        if params.has("inline_message_id"):
            raise ApiError.bad_request("inline messages are not supported by the fake Bot API")
        chat = self._existing_chat(params.get_chat_id())
        message_id = params.get_int("message_id", required="message identifier is not specified")
        message = chat.messages.get(message_id or 0)
        if message is None:
            raise ApiError.bad_request("message to edit not found")
        if not message["from"]["is_bot"]:
            raise ApiError.bad_request("message can't be edited")
        return chat, message

    def _record_edit(
        self, method: str, params: _Params, chat: _Chat, message: JSONDict, markup: JSONDict | None, text: str | None
    ) -> Any:
        self._set_optional(message, "reply_markup", markup)
        message["edit_date"] = int(time.time())
        return self._record(
            method, params, message, chat=chat.user.id, message_id=message["message_id"], text=text, markup=markup
        )

    @staticmethod
    def _set_optional(message: JSONDict, key: str, value: Any) -> None:
        if value:
            message[key] = value
        else:
            message.pop(key, None)

    def _enqueue(self, kind: str, payload: JSONDict) -> None:
        wanted = kind not in _OPT_IN_UPDATE_TYPES if self._allowed_updates is None else kind in self._allowed_updates
        if not wanted:
            return
        self._updates.append({"update_id": self._next_update_id, kind: payload})
        self._next_update_id += 1
        self._notify_updates()

    def _notify_updates(self) -> None:
        self._updates_changed.set()
        self._updates_changed = asyncio.Event()

    def _record(
        self,
        method: str,
        params: _Params,
        result: Any,
        *,
        chat: int | None = None,
        message_id: int | None = None,
        text: str | None = None,
        markup: JSONDict | None = None,
        document: SentDocument | None = None,
    ) -> Any:
        action = BotAction(
            method=method,
            params=params.public(),
            result=copy.deepcopy(result),
            chat_id=chat,
            message_id=message_id,
            text=text,
            reply_markup=copy.deepcopy(markup),
            document=document,
        )
        self.sent.append(action)
        self._actions_changed.set()
        self._actions_changed = asyncio.Event()
        for listener in list(self._listeners):
            try:
                listener(action)
            except Exception:
                log.exception("fake Bot API listener failed")
        return result

    # ---------------------------------------------------------------------------------------------
    # Helpers: text, markup, files

    @staticmethod
    def _formatted(params: _Params, text_key: str, entities_key: str) -> tuple[str, list[JSONDict]]:
        """Text with entities after parse_mode (or explicit entities), trimmed like Telegram does."""
        text = params.get_str(text_key) or ""
        parse_mode = (params.get_str("parse_mode") or "").lower()
        if parse_mode:
            parser = _PARSERS.get(parse_mode)
            if parser is None:
                raise ApiError.bad_request("unsupported parse_mode")
            try:
                text, entities = parser(text)
            except _MarkupError as error:
                raise ApiError.bad_request(f"can't parse entities: {error}") from None
        else:
            explicit = params.get_json(entities_key, what="entities")
            entities = (
                _sorted_entities(e for e in explicit if isinstance(e, dict)) if isinstance(explicit, list) else []
            )
        return _trim(text, entities)

    def _reply_markup(self, params: _Params, chat: _Chat) -> JSONDict | None:
        """The inline keyboard to attach to a new message; reply keyboards are kept per chat."""
        markup = params.get_json("reply_markup", what="reply keyboard markup")
        if markup is None:
            return None
        if not isinstance(markup, dict):
            raise ApiError.bad_request("can't parse reply keyboard markup JSON object")
        if "inline_keyboard" in markup:
            return self._checked_inline_keyboard(markup)
        if "keyboard" in markup:
            if not isinstance(markup["keyboard"], list):
                raise ApiError.bad_request('field "keyboard" of the ReplyKeyboardMarkup must be an Array')
            chat.reply_keyboard = markup
        elif markup.get("remove_keyboard"):
            chat.reply_keyboard = None
        elif not markup.get("force_reply"):
            raise ApiError.bad_request("can't parse reply keyboard markup JSON object")
        return None

    def _inline_markup(self, params: _Params) -> JSONDict | None:
        markup = params.get_json("reply_markup", what="reply keyboard markup")
        if markup is None:
            return None
        if not isinstance(markup, dict) or "inline_keyboard" not in markup:
            raise ApiError.bad_request("can't parse inline keyboard markup JSON object")
        return self._checked_inline_keyboard(markup)

    @staticmethod
    def _checked_inline_keyboard(markup: JSONDict) -> JSONDict | None:
        rows = markup["inline_keyboard"]
        if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
            raise ApiError.bad_request('field "inline_keyboard" of the InlineKeyboardMarkup must be an Array of Arrays')
        for row in rows:
            for button in row:
                if not isinstance(button, dict) or not isinstance(button.get("text"), str):
                    raise ApiError.bad_request(
                        "can't parse inline keyboard button: InlineKeyboardButton must be an Object"
                    )
                if not any(key in button for key in _INLINE_BUTTON_ACTIONS):
                    raise ApiError.bad_request(
                        "can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard"
                    )
                data = button.get("callback_data")
                if data is not None and not 1 <= len(str(data).encode("utf-8")) <= MAX_CALLBACK_DATA_BYTES:
                    raise ApiError.bad_request("BUTTON_DATA_INVALID")
                url = button.get("url")
                if url is not None and not re.match(r"(https?|tg)://\S+$", str(url)):
                    raise ApiError.bad_request(f"inline keyboard button URL '{url}' is invalid: Wrong HTTP URL")
        cleaned = [row for row in rows if row]
        return {"inline_keyboard": cleaned} if cleaned else None

    def _store_file(
        self,
        kind: str,
        data: bytes,
        *,
        file_name: str | None = None,
        mime_type: str | None = None,
        file_size: int | None = None,
    ) -> _StoredFile:
        number = next(self._ids)
        stored = _StoredFile(
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

    def _bot_file(self, document: _Upload | str) -> _StoredFile:
        """The file behind a document the bot sends: an upload, a file_id, or a file:// path (local mode)."""
        if isinstance(document, _Upload):
            name = document.filename or "document"
            mime = document.content_type
            if not mime or mime == "application/octet-stream":
                mime = mimetypes.guess_type(name)[0] or "application/octet-stream"
            return self._store_file("document", document.data, file_name=name, mime_type=mime)
        if document in self._files:
            return self._files[document]
        if document.startswith("file://"):
            if not self.local_mode:
                raise ApiError.bad_request("wrong HTTP URL specified")
            path = Path(url2pathname(unquote(urlparse(document).path)))
            if not path.is_file():
                raise ApiError.bad_request("file not found")
            if path.stat().st_size > LOCAL_UPLOAD_LIMIT:
                raise ApiError(413, "Request Entity Too Large")
            name = path.name
            mime = mimetypes.guess_type(name)[0] or "application/octet-stream"
            return self._store_file("document", path.read_bytes(), file_name=name, mime_type=mime)
        if document.startswith(("http://", "https://")):
            raise ApiError.bad_request("failed to get HTTP URL content")
        raise ApiError.bad_request("wrong file identifier/HTTP URL specified")

    @staticmethod
    def _document_dict(stored: _StoredFile) -> JSONDict:
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

    @staticmethod
    def _scope_key(scope: Any) -> str:
        if not isinstance(scope, dict) or scope.get("type", "default") == "default":
            return "default"
        return json.dumps(scope, sort_keys=True)

"""The record of what the bot did: the calls that changed what a user sees, and the calls that failed."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from bot.fake_api.params import Params
from bot.fake_api.protocol import JSONDict

log = logging.getLogger(__name__)


class SentDocument(NamedTuple):
    """A document the bot sent: its name, its bytes and its caption (plain text, after parsing)."""

    file_name: str
    data: bytes
    caption: str | None


class SentPhoto(NamedTuple):
    """A photo the bot sent: its bytes as uploaded, its caption and its size in pixels."""

    data: bytes
    caption: str | None
    width: int
    height: int


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
    photo: SentPhoto | None = None


@dataclass(frozen=True)
class FailedCall:
    """A call the API answered with an error (``injected`` when it came from :meth:`FakeBotApi.fail_next`)."""

    method: str
    error_code: int
    description: str
    params: JSONDict
    injected: bool = False


Listener = Callable[[BotAction], None]


class ActionLog:
    """Bot actions and failed calls, oldest first, for tests and the console; listeners hear actions at once."""

    def __init__(self) -> None:
        self.sent: list[BotAction] = []
        self.failed: list[FailedCall] = []
        self._listeners: list[Listener] = []
        self._changed = asyncio.Event()

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        self._listeners.remove(listener)

    def record(
        self,
        method: str,
        params: Params,
        result: Any,
        *,
        chat: int | None = None,
        message_id: int | None = None,
        text: str | None = None,
        markup: JSONDict | None = None,
        document: SentDocument | None = None,
        photo: SentPhoto | None = None,
    ) -> Any:
        """Keep a successful call as a bot action and tell the listeners; returns ``result``."""
        action = BotAction(
            method=method,
            params=params.public(),
            result=copy.deepcopy(result),
            chat_id=chat,
            message_id=message_id,
            text=text,
            reply_markup=copy.deepcopy(markup),
            document=document,
            photo=photo,
        )
        self.sent.append(action)
        self._changed.set()
        self._changed = asyncio.Event()
        for listener in list(self._listeners):
            try:
                listener(action)
            except Exception:
                log.exception("fake Bot API listener failed")
        return result

    async def wait_for(self, matches: Callable[[BotAction], bool], *, timeout: float, since: int) -> BotAction:
        """The first action in ``sent[since:]`` that ``matches``, waiting up to ``timeout`` seconds for it."""
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
            changed = self._changed
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await changed.wait()

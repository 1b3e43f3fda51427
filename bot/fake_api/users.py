"""The user side of the conversation: simulated people sending the bot messages, files and button presses.

It works without a running server: updates wait in the queue until the bot polls.
"""

from __future__ import annotations

import copy
import mimetypes
import os
from collections.abc import Iterator
from pathlib import Path

from bot.fake_api.chats import CallbackQuery, Chats, FakeUser
from bot.fake_api.files import FileStore, document_dict, tiny_png
from bot.fake_api.markup import user_entities
from bot.fake_api.protocol import JSONDict
from bot.fake_api.updates import UpdateQueue


class UserSide:
    """What the people on the other side of the bot's chats do, and what they see in those chats."""

    def __init__(
        self, bot_user: JSONDict, chats: Chats, files: FileStore, updates: UpdateQueue, ids: Iterator[int]
    ) -> None:
        self.bot_user = bot_user
        self._chats = chats
        self._files = files
        self._updates = updates
        self._ids = ids

    def add_user(self, user: FakeUser) -> None:
        """Open the private chat with ``user`` (as if they had started the bot) without a message."""
        self._chats.chat_of(user)

    def user_sends_text(self, user: FakeUser | int, text: str, *, reply_to: int | None = None) -> JSONDict:
        """The user types ``text``; commands get ``bot_command`` entities. Returns the message."""
        chat = self._chats.chat_of(user)
        message = self._chats.new_user_message(chat, reply_to)
        message["text"] = text
        entities = user_entities(text)
        if entities:
            message["entities"] = entities
        return self._chats.deliver_user_message(chat, message)

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
        stored = self._files.store("document", data, file_name=name, mime_type=mime, file_size=file_size)
        chat = self._chats.chat_of(user)
        message = self._chats.new_user_message(chat, None)
        message["document"] = document_dict(stored)
        if caption:
            message["caption"] = caption
        return self._chats.deliver_user_message(chat, message)

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
        content = tiny_png() if data is None else data
        scale = max(width, height, 1)
        sizes = []
        for w, h in ((max(1, width * 90 // scale), max(1, height * 90 // scale)), (width, height)):
            stored = self._files.store("photo", content)
            sizes.append(
                {
                    "file_id": stored.file_id,
                    "file_unique_id": stored.file_unique_id,
                    "file_size": stored.file_size,
                    "width": w,
                    "height": h,
                }
            )
        chat = self._chats.chat_of(user)
        message = self._chats.new_user_message(chat, None)
        message["photo"] = sizes
        if caption:
            message["caption"] = caption
        return self._chats.deliver_user_message(chat, message)

    def user_sends_sticker(self, user: FakeUser | int, emoji: str = "👍") -> JSONDict:
        """The user sends a (static, regular) sticker."""
        stored = self._files.store("sticker", b"RIFF\x0c\x00\x00\x00WEBPVP8 ")
        chat = self._chats.chat_of(user)
        message = self._chats.new_user_message(chat, None)
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
        return self._chats.deliver_user_message(chat, message)

    def user_presses_button(self, user: FakeUser | int, message_id: int, callback_data: str) -> str:
        """The user taps an inline button of a message. Returns the callback query id.

        Raises ``ValueError`` when the message has no such button: a client could not send that.
        """
        chat = self._chats.chat_of(user)
        message = chat.messages.get(message_id)
        if message is None:
            raise ValueError(f"no message {message_id} in chat {chat.user.id}")
        rows = (message.get("reply_markup") or {}).get("inline_keyboard", [])
        if not any(button.get("callback_data") == callback_data for row in rows for button in row):
            raise ValueError(f"message {message_id} has no button with callback_data {callback_data!r}")
        query_id = str(4_000_000_000_000_000_000 + next(self._ids))
        self._chats.callbacks[query_id] = CallbackQuery(query_id, chat.user.id, message_id)
        self._updates.enqueue(
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
        self._chats.set_blocked(self._chats.chat_of(user), True)

    def user_unblocks_bot(self, user: FakeUser | int) -> None:
        self._chats.set_blocked(self._chats.chat_of(user), False)

    # ---------------------------------------------------------------------------------------------
    # What the users see

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

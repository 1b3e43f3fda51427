"""The private chats between the bot and its simulated users, with every message as it stands now."""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field

from bot.fake_api.params import Params
from bot.fake_api.protocol import ApiError, JSONDict
from bot.fake_api.updates import UpdateQueue


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


@dataclass
class Chat:
    user: FakeUser
    messages: dict[int, JSONDict] = field(default_factory=dict)
    next_message_id: int = 1
    blocked: bool = False
    reply_keyboard: JSONDict | None = None


@dataclass
class CallbackQuery:
    id: str
    chat_id: int
    message_id: int
    answered: bool = False


class Chats:
    """Every private chat by its id (the user's id), the callback queries asked in them, and new messages."""

    def __init__(self, bot_user: JSONDict, updates: UpdateQueue) -> None:
        self._bot_user = bot_user
        self._updates = updates
        self._chats: dict[int, Chat] = {}
        self.callbacks: dict[str, CallbackQuery] = {}

    def get(self, chat_id: int) -> Chat | None:
        return self._chats.get(chat_id)

    def chat_of(self, user: FakeUser | int) -> Chat:
        if isinstance(user, FakeUser):
            chat = self._chats.get(user.id)
            if chat is None:
                chat = self._chats[user.id] = Chat(user)
            return chat
        chat = self._chats.get(user)
        if chat is None:
            raise ValueError(f"no user with id {user}: pass a FakeUser the first time")
        return chat

    def existing_chat(self, chat_id: int) -> Chat:
        chat = self._chats.get(chat_id)
        if chat is None:
            raise ApiError.bad_request("chat not found")
        return chat

    def chat_for_sending(self, params: Params) -> Chat:
        chat = self.existing_chat(params.get_chat_id())
        if chat.blocked:
            raise ApiError(403, "Forbidden: bot was blocked by the user")
        return chat

    def set_blocked(self, chat: Chat, blocked: bool) -> None:
        if chat.blocked == blocked:
            return
        chat.blocked = blocked
        bot = dict(self._bot_user)
        old, new = ("member", "kicked") if blocked else ("kicked", "member")
        new_member: JSONDict = {"status": new, "user": bot}
        if blocked:
            new_member["until_date"] = 0
        self._updates.enqueue(
            "my_chat_member",
            {
                "chat": chat.user.chat_dict(),
                "from": chat.user.to_dict(),
                "date": int(time.time()),
                "old_chat_member": {"status": old, "user": bot, **({} if blocked else {"until_date": 0})},
                "new_chat_member": new_member,
            },
        )

    def new_user_message(self, chat: Chat, reply_to: int | None) -> JSONDict:
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

    def deliver_user_message(self, chat: Chat, message: JSONDict) -> JSONDict:
        chat.messages[message["message_id"]] = message
        self._updates.enqueue("message", copy.deepcopy(message))
        return copy.deepcopy(message)

    def new_bot_message(self, chat: Chat, params: Params) -> JSONDict:
        reply_to = self._reply_target(chat, params)
        message: JSONDict = {
            "message_id": self._take_message_id(chat),
            "from": dict(self._bot_user),
            "chat": chat.user.chat_dict(),
            "date": int(time.time()),
        }
        if reply_to is not None:
            message["reply_to_message"] = self._without_reply(reply_to)
        return message

    def _reply_target(self, chat: Chat, params: Params) -> JSONDict | None:
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
    def _take_message_id(chat: Chat) -> int:
        message_id = chat.next_message_id
        chat.next_message_id += 1
        return message_id

    def message_to_edit(self, params: Params) -> tuple[Chat, JSONDict]:
        if params.has("inline_message_id"):
            raise ApiError.bad_request("inline messages are not supported by the fake Bot API")
        chat = self.existing_chat(params.get_chat_id())
        message_id = params.get_int("message_id", required="message identifier is not specified")
        message = chat.messages.get(message_id or 0)
        if message is None:
            raise ApiError.bad_request("message to edit not found")
        if not message["from"]["is_bot"]:
            raise ApiError.bad_request("message can't be edited")
        return chat, message

"""The Bot API methods the fake implements, each answering as Telegram does (or failing as it would)."""

from __future__ import annotations

import copy
import json
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bot.fake_api.chats import Chat, Chats
from bot.fake_api.files import FileStore, document_dict, image_size
from bot.fake_api.keyboards import inline_markup, reply_markup
from bot.fake_api.markup import formatted_text
from bot.fake_api.params import Params
from bot.fake_api.protocol import (
    MAX_CALLBACK_ANSWER_LENGTH,
    MAX_CAPTION_LENGTH,
    MAX_TEXT_LENGTH,
    NOT_MODIFIED_DESCRIPTION,
    ApiError,
    JSONDict,
)
from bot.fake_api.records import ActionLog, SentDocument, SentPhoto
from bot.fake_api.updates import UpdateQueue

Handler = Callable[[Params], Awaitable[Any]]
MAX_PHOTO_WIDTH_PLUS_HEIGHT = 10_000  # sendPhoto: "The photo's width and height must not exceed 10000 in total"

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


class BotApiMethods:
    """The handler of every Bot API method by its name, over the state the user side shares."""

    def __init__(
        self, bot_user: JSONDict, chats: Chats, files: FileStore, updates: UpdateQueue, actions: ActionLog
    ) -> None:
        self._bot_user = bot_user
        self._chats = chats
        self._files = files
        self._updates = updates
        self._actions = actions
        self._commands: dict[tuple[str, str], list[JSONDict]] = {}
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
            "sendPhoto": self._send_photo,
            "getFile": self._get_file,
            "sendChatAction": self._send_chat_action,
            "setMyCommands": self._set_my_commands,
            "getMyCommands": self._get_my_commands,
            "deleteMyCommands": self._delete_my_commands,
        }
        for name in _UNSUPPORTED_METHODS:
            self._handlers.setdefault(name, self._unsupported(name))
        self._by_lower = {name.lower(): name for name in self._handlers}

    def canonical_name(self, requested: str) -> str | None:
        """The method's name as Telegram spells it (names are case-insensitive), None for an unknown method."""
        return self._by_lower.get(requested.lower())

    async def call(self, name: str, params: Params) -> Any:
        """Run a known method (by its canonical name); raises ``ApiError`` for the answers Telegram fails with."""
        return await self._handlers[name](params)

    def commands(self, scope: JSONDict | None, language_code: str) -> list[JSONDict]:
        return copy.deepcopy(self._commands.get((self._scope_key(scope), language_code), []))

    def _unsupported(self, name: str) -> Handler:
        async def handler(params: Params) -> Any:
            raise ApiError.bad_request(f"method {name} is not supported by the fake Bot API")

        return handler

    async def _get_me(self, params: Params) -> Any:
        return {
            **self._bot_user,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    async def _delete_webhook(self, params: Params) -> Any:
        if params.get_bool("drop_pending_updates"):
            self._updates.drop_pending()
        return True

    async def _get_webhook_info(self, params: Params) -> Any:
        return {"url": "", "has_custom_certificate": False, "pending_update_count": self._updates.pending}

    async def _get_updates(self, params: Params) -> Any:
        offset = params.get_int("offset")
        limit = min(max(params.get_int("limit") or 100, 1), 100)
        try:
            timeout = max(float(params.get_str("timeout") or 0), 0.0)
        except ValueError:
            raise ApiError.bad_request("invalid timeout specified") from None
        allowed = params.get_json("allowed_updates")
        if isinstance(allowed, list):
            self._updates.allowed_updates = frozenset(str(kind) for kind in allowed) or None
        return await self._updates.poll(offset, limit, timeout)

    async def _send_message(self, params: Params) -> Any:
        chat = self._chats.chat_for_sending(params)
        text, entities = formatted_text(params, "text", "entities")
        if not text:
            raise ApiError.bad_request("message text is empty")
        if len(text) > MAX_TEXT_LENGTH:
            raise ApiError.bad_request("message is too long")
        markup = reply_markup(params, chat)
        message = self._chats.new_bot_message(chat, params)
        message["text"] = text
        if entities:
            message["entities"] = entities
        if markup:
            message["reply_markup"] = markup
        chat.messages[message["message_id"]] = message
        return self._actions.record(
            "sendMessage",
            params,
            message,
            chat=chat.user.id,
            message_id=message["message_id"],
            text=text,
            markup=markup,
        )

    async def _send_document(self, params: Params) -> Any:
        chat = self._chats.chat_for_sending(params)
        document = params.input_file("document")
        if document is None:
            raise ApiError.bad_request("there is no document in the request")
        stored = self._files.bot_file(document)
        message, caption, markup = self._media_message(chat, params, "document", document_dict(stored))
        sent = SentDocument(stored.file_name or "document", stored.data, caption or None)
        return self._actions.record(
            "sendDocument",
            params,
            message,
            chat=chat.user.id,
            message_id=message["message_id"],
            text=caption or None,
            markup=markup,
            document=sent,
        )

    def _media_message(self, chat: Chat, params: Params, kind: str, media: Any) -> tuple[JSONDict, str, Any]:
        """A new bot message holding `media` under `kind` ("document", "photo"), with the request's caption and
        keyboard, stored in the chat: (the message, its caption, its keyboard)."""
        caption, entities = formatted_text(params, "caption", "caption_entities")
        if len(caption) > MAX_CAPTION_LENGTH:
            raise ApiError.bad_request("message caption is too long")
        markup = reply_markup(params, chat)
        message = self._chats.new_bot_message(chat, params)
        message[kind] = media
        if caption:
            message["caption"] = caption
        if entities:
            message["caption_entities"] = entities
        if markup:
            message["reply_markup"] = markup
        chat.messages[message["message_id"]] = message
        return message, caption, markup

    async def _send_photo(self, params: Params) -> Any:
        """A photo: Telegram shows it in the chat (and would re-encode it as JPEG; the fake keeps the bytes sent)."""
        chat = self._chats.chat_for_sending(params)
        photo = params.input_file("photo")
        if photo is None:
            raise ApiError.bad_request("there is no photo in the request")
        stored = self._files.bot_file(photo, kind="photo")
        width, height = image_size(stored.data)
        if width + height > MAX_PHOTO_WIDTH_PLUS_HEIGHT:
            raise ApiError.bad_request("PHOTO_INVALID_DIMENSIONS")
        size = {"file_id": stored.file_id, "file_unique_id": stored.file_unique_id, "file_size": stored.file_size}
        message, caption, markup = self._media_message(
            chat, params, "photo", [{**size, "width": width, "height": height}]
        )
        return self._actions.record(
            "sendPhoto",
            params,
            message,
            chat=chat.user.id,
            message_id=message["message_id"],
            text=caption or None,
            markup=markup,
            photo=SentPhoto(stored.data, caption or None, width, height),
        )

    async def _edit_message_text(self, params: Params) -> Any:
        chat, message = self._chats.message_to_edit(params)
        if "text" not in message:
            raise ApiError.bad_request("there is no text in the message to edit")
        text, entities = formatted_text(params, "text", "entities")
        if not text:
            raise ApiError.bad_request("message text is empty")
        if len(text) > MAX_TEXT_LENGTH:
            raise ApiError.bad_request("MESSAGE_TOO_LONG")
        markup = inline_markup(params)
        if (
            text == message["text"]
            and entities == message.get("entities", [])
            and markup == message.get("reply_markup")
        ):
            raise ApiError(400, NOT_MODIFIED_DESCRIPTION)
        message["text"] = text
        self._set_optional(message, "entities", entities)
        return self._record_edit("editMessageText", params, chat, message, markup, text)

    async def _edit_message_caption(self, params: Params) -> Any:
        chat, message = self._chats.message_to_edit(params)
        if not any(kind in message for kind in ("document", "photo")):
            raise ApiError.bad_request("there is no caption in the message to edit")
        caption, entities = formatted_text(params, "caption", "caption_entities")
        if len(caption) > MAX_CAPTION_LENGTH:
            raise ApiError.bad_request("message caption is too long")
        markup = inline_markup(params)
        if (
            caption == message.get("caption", "")
            and entities == message.get("caption_entities", [])
            and markup == message.get("reply_markup")
        ):
            raise ApiError(400, NOT_MODIFIED_DESCRIPTION)
        self._set_optional(message, "caption", caption)
        self._set_optional(message, "caption_entities", entities)
        return self._record_edit("editMessageCaption", params, chat, message, markup, caption or None)

    async def _edit_message_reply_markup(self, params: Params) -> Any:
        chat, message = self._chats.message_to_edit(params)
        markup = inline_markup(params)
        if markup == message.get("reply_markup"):
            raise ApiError(400, NOT_MODIFIED_DESCRIPTION)
        return self._record_edit("editMessageReplyMarkup", params, chat, message, markup, message.get("text"))

    async def _delete_message(self, params: Params) -> Any:
        chat = self._chats.existing_chat(params.get_chat_id())
        message_id = params.get_int("message_id", required="message identifier is not specified")
        assert message_id is not None
        if chat.messages.pop(message_id, None) is None:
            raise ApiError.bad_request("message to delete not found")
        return self._actions.record("deleteMessage", params, True, chat=chat.user.id, message_id=message_id)

    async def _answer_callback_query(self, params: Params) -> Any:
        query_id = params.get_str("callback_query_id", required="query_id is empty")
        query = self._chats.callbacks.get(query_id or "")
        if query is None or query.answered:
            raise ApiError.bad_request("query is too old and response timeout expired or query ID is invalid")
        text = params.get_str("text")
        if text is not None and len(text) > MAX_CALLBACK_ANSWER_LENGTH:
            raise ApiError.bad_request("MESSAGE_TOO_LONG")
        query.answered = True
        return self._actions.record(
            "answerCallbackQuery", params, True, chat=query.chat_id, message_id=query.message_id, text=text
        )

    async def _get_file(self, params: Params) -> Any:
        file_id = params.get_str("file_id", required="file_id not specified")
        return self._files.file_info(file_id or "")

    async def _send_chat_action(self, params: Params) -> Any:
        chat = self._chats.chat_for_sending(params)
        action = params.get_str("action", required="action is empty")
        if action not in _CHAT_ACTIONS:
            raise ApiError.bad_request("wrong parameter action in request")
        return self._actions.record("sendChatAction", params, True, chat=chat.user.id, text=action)

    async def _set_my_commands(self, params: Params) -> Any:
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
        return self._actions.record("setMyCommands", params, True)

    async def _get_my_commands(self, params: Params) -> Any:
        key = (self._scope_key(params.get_json("scope")), params.get_str("language_code") or "")
        return copy.deepcopy(self._commands.get(key, []))

    async def _delete_my_commands(self, params: Params) -> Any:
        key = (self._scope_key(params.get_json("scope")), params.get_str("language_code") or "")
        self._commands.pop(key, None)
        return self._actions.record("deleteMyCommands", params, True)

    def _record_edit(
        self, method: str, params: Params, chat: Chat, message: JSONDict, markup: JSONDict | None, text: str | None
    ) -> Any:
        self._set_optional(message, "reply_markup", markup)
        message["edit_date"] = int(time.time())
        return self._actions.record(
            method, params, message, chat=chat.user.id, message_id=message["message_id"], text=text, markup=markup
        )

    @staticmethod
    def _set_optional(message: JSONDict, key: str, value: Any) -> None:
        if value:
            message[key] = value
        else:
            message.pop(key, None)

    @staticmethod
    def _scope_key(scope: Any) -> str:
        if not isinstance(scope, dict) or scope.get("type", "default") == "default":
            return "default"
        return json.dumps(scope, sort_keys=True)

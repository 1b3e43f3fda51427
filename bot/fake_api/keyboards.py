"""The reply markup the bot sends: inline keyboards, checked as Telegram checks them, and reply keyboards."""

from __future__ import annotations

import re

from bot.fake_api.chats import Chat
from bot.fake_api.params import Params
from bot.fake_api.protocol import MAX_CALLBACK_DATA_BYTES, ApiError, JSONDict

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


def reply_markup(params: Params, chat: Chat) -> JSONDict | None:
    """The inline keyboard to attach to a new message; reply keyboards are kept per chat."""
    markup = params.get_json("reply_markup", what="reply keyboard markup")
    if markup is None:
        return None
    if not isinstance(markup, dict):
        raise ApiError.bad_request("can't parse reply keyboard markup JSON object")
    if "inline_keyboard" in markup:
        return _checked_inline_keyboard(markup)
    if "keyboard" in markup:
        if not isinstance(markup["keyboard"], list):
            raise ApiError.bad_request('field "keyboard" of the ReplyKeyboardMarkup must be an Array')
        chat.reply_keyboard = markup
    elif markup.get("remove_keyboard"):
        chat.reply_keyboard = None
    elif not markup.get("force_reply"):
        raise ApiError.bad_request("can't parse reply keyboard markup JSON object")
    return None


def inline_markup(params: Params) -> JSONDict | None:
    """The inline keyboard of an edited message (an edit cannot set a reply keyboard)."""
    markup = params.get_json("reply_markup", what="reply keyboard markup")
    if markup is None:
        return None
    if not isinstance(markup, dict) or "inline_keyboard" not in markup:
        raise ApiError.bad_request("can't parse inline keyboard markup JSON object")
    return _checked_inline_keyboard(markup)


def _checked_inline_keyboard(markup: JSONDict) -> JSONDict | None:
    rows = markup["inline_keyboard"]
    if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
        raise ApiError.bad_request('field "inline_keyboard" of the InlineKeyboardMarkup must be an Array of Arrays')
    for row in rows:
        for button in row:
            if not isinstance(button, dict) or not isinstance(button.get("text"), str):
                raise ApiError.bad_request("can't parse inline keyboard button: InlineKeyboardButton must be an Object")
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

"""The rest of the methods: commands, deleting messages, callback answers, photos and stickers received."""

from __future__ import annotations

import pytest
from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.error import BadRequest

from bot.fake_api import FakeBotApi
from tests.bot.fake_api.support import ALICE, async_test, bot_for

# --- the rest of the methods ----------------------------------------------------------------------------------------


@async_test
async def test_commands_delete_and_callback_answers() -> None:
    async with FakeBotApi() as api, bot_for(api) as bot:
        assert await bot.set_my_commands([("start", "Start"), ("convert", "Convert a model")])
        assert [(c.command, c.description) for c in await bot.get_my_commands()] == [
            ("start", "Start"),
            ("convert", "Convert a model"),
        ]
        assert await bot.set_my_commands([("hilfe", "Hilfe")], language_code="de")
        assert api.commands(language_code="de") == [{"command": "hilfe", "description": "Hilfe"}]
        with pytest.raises(BadRequest, match="Bot_command_invalid"):
            await bot.set_my_commands([("Bad-Command", "x")])
        assert await bot.delete_my_commands()
        assert await bot.get_my_commands() == ()

        user_message = api.user_sends_text(ALICE, "hello")
        assert await bot.delete_message(ALICE.id, user_message["message_id"])
        with pytest.raises(BadRequest, match="Message to delete not found"):
            await bot.delete_message(ALICE.id, user_message["message_id"])
        assert api.messages_in(ALICE.id) == []

        keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("Yes", callback_data="yes")]])
        question = await bot.send_message(ALICE.id, "Sure?", reply_markup=keyboard)
        with pytest.raises(ValueError, match="no button"):
            api.user_presses_button(ALICE, question.message_id, "no")
        query_id = api.user_presses_button(ALICE, question.message_id, "yes")
        assert await bot.answer_callback_query(query_id, "ok")
        with pytest.raises(BadRequest, match="Query is too old"):
            await bot.answer_callback_query(query_id)

        api.user_sends_photo(ALICE, caption="a cat")
        api.user_sends_sticker(ALICE)
        updates = await bot.get_updates()
        assert [type_of(u) for u in updates] == ["message", "callback_query", "photo", "sticker"]
        photo = updates[2].message.photo if updates[2].message else ()
        assert len(photo) == 2 and photo[-1].width == 800
        photo_file = await bot.get_file(photo[-1].file_id)
        assert (await photo_file.download_as_bytearray()).startswith(b"\x89PNG")
        assert updates[1].callback_query and updates[1].callback_query.message
        assert updates[1].callback_query.message.message_id == question.message_id


def type_of(update: Update) -> str:
    if update.callback_query:
        return "callback_query"
    assert update.message is not None
    if update.message.photo:
        return "photo"
    if update.message.sticker:
        return "sticker"
    return "message"

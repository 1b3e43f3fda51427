"""The real python-telegram-bot Application long polling the fake API, as convbot's bot does."""

from __future__ import annotations

import datetime as dtm
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.constants import ParseMode
from telegram.ext import (
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from bot.fake_api import FakeBotApi, SentDocument
from tests.bot.fake_api.support import ALICE, BOB, async_test

# --- a small bot of the kind convbot is -----------------------------------------------------------------------------


async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    assert update.message is not None
    keyboard = InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton("TFLite", callback_data="to:tflite"),
                InlineKeyboardButton("TF.js", callback_data="to:tfjs"),
            ]
        ]
    )
    await update.message.reply_text("Send me a <b>model</b>.", parse_mode=ParseMode.HTML, reply_markup=keyboard)


async def choose(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    query = update.callback_query
    assert query is not None and query.data is not None
    await query.answer(f"Converting to {query.data.removeprefix('to:')}")
    await query.edit_message_text(f"Target: {query.data.removeprefix('to:')}")


async def reverse_document(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    message = update.message
    assert message is not None and message.document is not None
    await context.bot.send_chat_action(message.chat_id, "upload_document")
    data = await (await message.document.get_file()).download_as_bytearray()
    await message.reply_document(
        document=bytes(reversed(data)), filename=f"reversed-{message.document.file_name}", caption="Reversed"
    )


def build_app(api: FakeBotApi) -> Application[Any, Any, Any, Any, Any, Any]:
    app = ApplicationBuilder().token(api.token).base_url(api.base_url).base_file_url(api.base_file_url).build()
    app.add_handler(CommandHandler("start", start))
    app.add_handler(CallbackQueryHandler(choose))
    app.add_handler(MessageHandler(filters.Document.ALL, reverse_document))
    return app


@asynccontextmanager
async def polling(api: FakeBotApi) -> AsyncIterator[Application[Any, Any, Any, Any, Any, Any]]:
    app = build_app(api)
    await app.initialize()
    await app.start()
    assert app.updater is not None
    await app.updater.start_polling(poll_interval=0, timeout=dtm.timedelta(seconds=1))
    try:
        yield app
    finally:
        await app.updater.stop()
        await app.stop()
        await app.shutdown()


# --- the real Application, long polling ----------------------------------------------------------------------------


@async_test
async def test_conversation_with_the_real_application() -> None:
    async with FakeBotApi() as api, polling(api):
        command = api.user_sends_text(ALICE, "/start")
        assert command["entities"] == [{"type": "bot_command", "offset": 0, "length": 6}]

        reply = await api.wait_for(method="sendMessage", chat_id=ALICE.id)
        assert reply.text == "Send me a model."
        assert reply.result["entities"] == [{"type": "bold", "offset": 10, "length": 5}]
        buttons = reply.reply_markup["inline_keyboard"][0] if reply.reply_markup else []
        assert [b["callback_data"] for b in buttons] == ["to:tflite", "to:tfjs"]
        assert "reply_to_message" not in reply.result  # PTB quotes only in groups by default
        assert reply.message_id == command["message_id"] + 1

        since = len(api.sent)
        query_id = api.user_presses_button(ALICE, reply.message_id, "to:tfjs")
        answer = await api.wait_for(method="answerCallbackQuery", since=since)
        assert answer.params["callback_query_id"] == query_id
        assert answer.text == "Converting to tfjs"
        edit = await api.wait_for(method="editMessageText", since=since)
        assert edit.message_id == reply.message_id

        # The stored message shows the edit; without a reply_markup the keyboard is gone, as on Telegram.
        messages = api.messages_in(ALICE.id)
        assert [m["message_id"] for m in messages] == [command["message_id"], reply.message_id]
        edited = messages[1]
        assert edited["text"] == "Target: tfjs"
        assert "reply_markup" not in edited
        assert isinstance(edited["edit_date"], int)
        assert edited["from"]["is_bot"] is True and edited["chat"] == {
            "id": ALICE.id,
            "type": "private",
            "first_name": "Alice",
            "username": "alice",
        }

        payload = bytes(range(256)) * 400  # 100 KB: a real download through the file URL
        since = len(api.sent)
        api.user_sends_document(ALICE, payload, "model.h5")
        sent = await api.wait_for(method="sendDocument", since=since)
        assert sent.document == SentDocument("reversed-model.h5", payload[::-1], "Reversed")
        assert api.documents_sent(ALICE.id) == [sent.document]
        assert sent.result["document"]["file_size"] == len(payload)
        assert [a.method for a in api.sent[since:]] == ["sendChatAction", "sendDocument"]
        assert len(api.downloads) == 1

        assert api.calls["getMe"] >= 1 and api.calls["deleteWebhook"] == 1 and api.calls["getUpdates"] >= 3
        assert api.failed == [] and api.server_errors == []


@async_test
async def test_two_users_get_their_own_chats_and_message_ids() -> None:
    async with FakeBotApi() as api, polling(api):
        api.user_sends_text(ALICE, "/start")
        api.user_sends_text(BOB, "/start")
        await api.wait_for(chat_id=ALICE.id)
        await api.wait_for(chat_id=BOB.id)
        for user in (ALICE, BOB):
            assert [m["message_id"] for m in api.messages_in(user.id)] == [1, 2]
            assert api.messages_in(user.id)[0]["from"]["language_code"] == user.language_code

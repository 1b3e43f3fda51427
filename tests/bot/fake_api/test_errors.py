"""Errors in Telegram's shape, as python-telegram-bot sees them: injected failures, edits that change nothing,
wrong tokens and methods, unknown chats and blocked users."""

from __future__ import annotations

import datetime as dtm

import httpx
import pytest
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup
from telegram.error import BadRequest, EndPointNotFound, Forbidden, InvalidToken, RetryAfter

from bot.fake_api import FakeBotApi
from tests.bot.fake_api.support import ALICE, async_test, bot_for

# --- errors in Telegram's shape, as python-telegram-bot sees them ---------------------------------------------------


@async_test
async def test_injected_429_is_retry_after(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PTB_TIMEDELTA", "true")  # PTB 22 warns on int retry_after otherwise
    async with FakeBotApi() as api:
        api.add_user(ALICE)
        api.fail_next("sendMessage", error_code=429, retry_after=3)
        async with bot_for(api) as bot:
            with pytest.raises(RetryAfter) as caught:
                await bot.send_message(ALICE.id, "hello")
            assert caught.value.retry_after == dtm.timedelta(seconds=3)
            message = await bot.send_message(ALICE.id, "hello")  # only the next call failed
            assert message.text == "hello"
        assert api.calls["sendMessage"] == 2
        assert [(f.method, f.error_code, f.description, f.injected) for f in api.failed] == [
            ("sendMessage", 429, "Too Many Requests: retry after 3", True)
        ]
        assert [a.text for a in api.sent] == ["hello"]


@async_test
async def test_injected_failures_of_other_kinds() -> None:
    async with FakeBotApi() as api:
        api.add_user(ALICE)
        api.fail_next("SENDCHATACTION", error_code=403, times=2)  # method names are case-insensitive
        api.fail_next("getFile", error_code=400, description="Bad Request: wrong file_id")
        async with bot_for(api) as bot:
            for _ in range(2):
                with pytest.raises(Forbidden, match="bot was blocked by the user"):
                    await bot.send_chat_action(ALICE.id, "typing")
            assert await bot.send_chat_action(ALICE.id, "typing") is True
            with pytest.raises(BadRequest, match="Wrong file_id"):
                await bot.get_file("anything")
        with pytest.raises(ValueError, match="unknown Bot API method"):
            api.fail_next("sendMesage")


@async_test
async def test_message_is_not_modified() -> None:
    async with FakeBotApi() as api:
        api.add_user(ALICE)
        keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("Go", callback_data="go")]])
        async with bot_for(api) as bot:
            message = await bot.send_message(ALICE.id, "Working…", reply_markup=keyboard)
            with pytest.raises(BadRequest, match=r"^Message is not modified: specified new message content"):
                await bot.edit_message_text("Working…", ALICE.id, message.message_id, reply_markup=keyboard)
            with pytest.raises(BadRequest, match="Message is not modified"):
                await bot.edit_message_reply_markup(ALICE.id, message.message_id, reply_markup=keyboard)
            # Same text, keyboard dropped: a change.
            edited = await bot.edit_message_text("Working…", ALICE.id, message.message_id)
            assert isinstance(edited, type(message)) and edited.reply_markup is None
            # Trailing whitespace is trimmed by Telegram, so this is no change either.
            with pytest.raises(BadRequest, match="Message is not modified"):
                await bot.edit_message_text("Working…\n", ALICE.id, message.message_id)
            with pytest.raises(BadRequest, match="Message to edit not found"):
                await bot.edit_message_text("x", ALICE.id, 999)
        assert [a.method for a in api.sent] == ["sendMessage", "editMessageText"]


@async_test
async def test_wrong_token_and_unknown_method() -> None:
    async with FakeBotApi() as api:
        wrong = Bot("999:WRONG", base_url=api.base_url, base_file_url=api.base_file_url)
        with pytest.raises(InvalidToken):
            await wrong.initialize()
        await wrong.shutdown()
        async with bot_for(api) as bot:
            with pytest.raises(EndPointNotFound):
                await bot.do_api_request("noSuchMethod")
            with pytest.raises(BadRequest, match="Method sendpoll is not supported by the fake bot api"):
                await bot.send_poll(1, "?", ["a", "b"])
        async with httpx.AsyncClient() as http:
            unauthorized = await http.post(f"{api.base_url}999:WRONG/getMe")
            assert unauthorized.status_code == 401
            assert unauthorized.json() == {"ok": False, "error_code": 401, "description": "Unauthorized"}
            missing = await http.post(f"{api.base_url}{api.token}/noSuchMethod")
            assert missing.status_code == 404
            assert missing.json() == {"ok": False, "error_code": 404, "description": "Not Found"}
            elsewhere = await http.get(f"{api.root_url}/favicon.ico")
            assert elsewhere.json()["error_code"] == 404


@async_test
async def test_chat_not_found_and_blocked_user() -> None:
    async with FakeBotApi() as api, bot_for(api) as bot:
        with pytest.raises(BadRequest, match="Chat not found"):
            await bot.send_message(4242, "hi")
        api.add_user(ALICE)
        api.user_blocks_bot(ALICE)
        with pytest.raises(Forbidden, match="bot was blocked by the user"):
            await bot.send_message(ALICE.id, "hi")
        api.user_unblocks_bot(ALICE)
        assert (await bot.send_message(ALICE.id, "hi")).text == "hi"
        updates = await bot.get_updates()
        assert [u.my_chat_member.new_chat_member.status for u in updates if u.my_chat_member] == [
            "kicked",
            "member",
        ]

"""The fake Bot API, driven by the real python-telegram-bot and by raw HTTP."""

from __future__ import annotations

import asyncio
import datetime as dtm
import functools
import json
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.constants import ParseMode
from telegram.error import BadRequest, Conflict, EndPointNotFound, Forbidden, InvalidToken, RetryAfter
from telegram.ext import (
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from bot.fake_api import DOWNLOAD_LIMIT, FakeBotApi, FakeUser, SentDocument

ALICE = FakeUser(1001, "Alice", username="alice")
BOB = FakeUser(1002, "Bob", language_code="de")


def async_test(fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test in a fresh event loop, with a time limit, and check that it left no task behind."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        async def main() -> None:
            async with asyncio.timeout(8):
                await fn(*args, **kwargs)
            await asyncio.sleep(0)
            leftover = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            assert not leftover, f"tasks left running: {leftover}"

        asyncio.run(main())

    return wrapper


async def eventually(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    """Wait until the server has reached a state (only for sequencing requests in tests)."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.002)


def bot_for(api: FakeBotApi, **kwargs: Any) -> Bot:
    return Bot(api.token, base_url=api.base_url, base_file_url=api.base_file_url, **kwargs)


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


@async_test
async def test_file_sent_back_by_file_id_is_the_same_file() -> None:
    async with FakeBotApi() as api:
        api.add_user(ALICE)
        async with bot_for(api) as bot:
            first = await bot.send_document(ALICE.id, b"weights", filename="w.bin")
            assert first.document is not None
            again = await bot.send_document(ALICE.id, first.document.file_id, caption="<i>again</i>", parse_mode="HTML")
            assert again.document is not None and again.document.file_id == first.document.file_id
            assert again.caption == "again"
            assert api.documents_sent(ALICE.id) == [
                SentDocument("w.bin", b"weights", None),
                SentDocument("w.bin", b"weights", "again"),
            ]
            with pytest.raises(BadRequest, match="Wrong file identifier"):
                await bot.send_document(ALICE.id, "no-such-file-id")


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
async def test_file_too_big_for_get_file_but_normal_files_download() -> None:
    async with FakeBotApi() as api:
        big = api.user_sends_document(ALICE, b"head of a big model", "big.h5", file_size=DOWNLOAD_LIMIT + 1)
        small = api.user_sends_document(ALICE, b"x" * 1000, "small.h5")
        async with bot_for(api) as bot:
            with pytest.raises(BadRequest, match=r"^File is too big$"):
                await bot.get_file(big["document"]["file_id"])
            file = await bot.get_file(small["document"]["file_id"])
            assert file.file_size == 1000 and file.file_path is not None
            assert file.file_path.startswith(f"{api.base_file_url}{api.token}/documents/file_")
            assert file.file_path.endswith(".h5")
            assert bytes(await file.download_as_bytearray()) == b"x" * 1000


@async_test
async def test_local_mode_serves_big_files_from_disk(tmp_path: Path) -> None:
    model = tmp_path / "model.tflite"
    model.write_bytes(b"TFL3" * 10)
    async with FakeBotApi(local_mode=True) as api:
        big = api.user_sends_document(ALICE, b"not really 21 MB", "big.h5", file_size=DOWNLOAD_LIMIT + 1)
        async with bot_for(api, local_mode=True) as bot:
            file = await bot.get_file(big["document"]["file_id"])
            assert file.file_path is not None and Path(file.file_path).is_absolute()
            assert bytes(await file.download_as_bytearray()) == b"not really 21 MB"
            # In local mode PTB passes a path as a file:// URI instead of uploading it.
            sent = await bot.send_document(ALICE.id, model)
            assert sent.document is not None and sent.document.file_name == "model.tflite"
        assert api.documents_sent(ALICE.id) == [SentDocument("model.tflite", b"TFL3" * 10, None)]
        local_dir = Path(file.file_path).parent.parent
    assert not local_dir.exists()


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


# --- parse modes and limits -----------------------------------------------------------------------------------------


@async_test
async def test_parse_modes_and_their_errors() -> None:
    async with FakeBotApi() as api:
        api.add_user(ALICE)
        async with bot_for(api) as bot:
            html = await bot.send_message(
                ALICE.id,
                '<b>bold <i>both</i></b> &lt;tag&gt; &amp; <a href="https://example.org">link</a> 🙂 <code>x</code>',
                parse_mode="HTML",
            )
            assert html.text == "bold both <tag> & link 🙂 x"
            assert [(e.type, e.offset, e.length) for e in html.entities] == [
                ("bold", 0, 9),
                ("italic", 5, 4),
                ("text_link", 18, 4),
                ("code", 26, 1),  # the emoji counts 2 UTF-16 units
            ]
            pre = await bot.send_message(
                ALICE.id, '<pre><code class="language-python">print(1)</code></pre>', parse_mode="HTML"
            )
            assert [(e.type, e.language) for e in pre.entities] == [("pre", "python")]
            for bad, error in [
                ("<b>open", 'Can\'t find end tag corresponding to start tag "b"'),
                ("1 < 2", 'Unsupported start tag "" at byte offset 2'),
                ("<blink>x</blink>", 'Unsupported start tag "blink" at byte offset 0'),
                ("<b>x</i>", 'Unmatched end tag at byte offset 4, expected "</b>", found "</i>"'),
            ]:
                with pytest.raises(BadRequest, match=r"^Can't parse entities: "):
                    await bot.send_message(ALICE.id, bad, parse_mode="HTML")
                assert api.failed[-1].description == f"Bad Request: can't parse entities: {error}"

            v2 = await bot.send_message(
                ALICE.id, r"*bold* _it_ __under__ `co\`de` [a](https://x.org/\)) 1\.5", parse_mode="MarkdownV2"
            )
            assert v2.text == "bold it under co`de a 1.5"
            assert [e.type for e in v2.entities] == ["bold", "italic", "underline", "code", "text_link"]
            assert v2.entities[-1].url == "https://x.org/)"
            for bad, error in [
                ("Done.", "Character '.' is reserved and must be escaped with the preceding '\\'"),
                ("*open", "Can't find end of Bold entity at byte offset 0"),
                ("a\\*b*c_", "Can't find end of Italic entity at byte offset 6"),
            ]:
                with pytest.raises(BadRequest, match=r"^Can't parse entities: "):
                    await bot.send_message(ALICE.id, bad, parse_mode="MarkdownV2")
                assert api.failed[-1].description == f"Bad Request: can't parse entities: {error}"

            legacy = await bot.send_message(ALICE.id, "*b* _i_ `c` [l](https://x.org) a.b", parse_mode="Markdown")
            assert legacy.text == "b i c l a.b"
            with pytest.raises(BadRequest, match=r"^Can't parse entities: "):
                await bot.send_message(ALICE.id, "the file_a.h5", parse_mode="Markdown")
            assert api.failed[-1].description == (
                "Bad Request: can't parse entities: Can't find end of the entity starting at byte offset 8"
            )
            with pytest.raises(BadRequest, match="Unsupported parse_mode"):
                await bot.send_message(ALICE.id, "x", parse_mode="BBCode")


@async_test
async def test_limits_telegram_enforces() -> None:
    async with FakeBotApi() as api:
        api.add_user(ALICE)
        async with bot_for(api) as bot:
            assert (await bot.send_message(ALICE.id, "x" * 4096)).text == "x" * 4096
            with pytest.raises(BadRequest, match="Message is too long"):
                await bot.send_message(ALICE.id, "x" * 4097)
            with pytest.raises(BadRequest, match="Message text is empty"):
                await bot.send_message(ALICE.id, "  \n ")
            with pytest.raises(BadRequest, match="Message caption is too long"):
                await bot.send_document(ALICE.id, b"1", filename="a", caption="c" * 1025)
            too_long = InlineKeyboardMarkup([[InlineKeyboardButton("x", callback_data="d" * 65)]])
            with pytest.raises(BadRequest, match="Button_data_invalid"):
                await bot.send_message(ALICE.id, "pick", reply_markup=too_long)
            with pytest.raises(BadRequest, match="Wrong parameter action"):
                await bot.send_chat_action(ALICE.id, "dancing")


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


# --- raw HTTP: long polling semantics, request encodings ------------------------------------------------------------


@async_test
async def test_get_updates_long_polling_semantics() -> None:
    async with FakeBotApi() as api, httpx.AsyncClient(base_url=f"{api.base_url}{api.token}/") as http:
        loop = asyncio.get_running_loop()

        started = loop.time()
        empty = await http.post("getUpdates", data={"timeout": "0.3"})
        assert empty.json() == {"ok": True, "result": []}
        assert loop.time() - started >= 0.25

        # A held request returns as soon as an update arrives.
        held = asyncio.create_task(http.post("getUpdates", data={"timeout": "5"}))
        await eventually(lambda: api.waiting_polls == 1)
        started = loop.time()
        api.user_sends_text(ALICE, "one")
        first = (await held).json()["result"]
        assert loop.time() - started < 1
        assert [u["update_id"] for u in first] == [1]
        assert first[0]["message"]["text"] == "one" and isinstance(first[0]["message"]["date"], int)

        # Unconfirmed updates come again; limit; offset confirms.
        api.user_sends_text(ALICE, "two")
        api.user_sends_text(ALICE, "three")
        again = (await http.post("getUpdates", json={"limit": 2})).json()["result"]
        assert [u["update_id"] for u in again] == [1, 2]
        rest = (await http.post("getUpdates", params={"offset": 2})).json()["result"]
        assert [u["message"]["text"] for u in rest] == ["two", "three"]
        last = (await http.post("getUpdates", json={"offset": -1})).json()["result"]
        assert [u["update_id"] for u in last] == [3]
        assert (await http.post("getUpdates", json={"offset": 4})).json()["result"] == []

        # A second poller ends the first with 409, like Telegram.
        older = asyncio.create_task(http.post("getUpdates", data={"timeout": "5"}))
        await eventually(lambda: api.waiting_polls == 1)
        newer = asyncio.create_task(http.post("getUpdates", data={"timeout": "0"}))
        conflict = await older
        assert conflict.status_code == 409
        assert conflict.json()["description"].startswith("Conflict: terminated by other getUpdates request")
        assert (await newer).json()["result"] == []

        # allowed_updates filters what is queued from then on.
        await http.post("getUpdates", json={"allowed_updates": ["callback_query"]})
        api.user_sends_text(ALICE, "ignored")
        assert (await http.post("getUpdates", json={"offset": 4})).json()["result"] == []


@async_test
async def test_conflict_reaches_ptb_as_conflict() -> None:
    async with FakeBotApi() as api, bot_for(api) as first, bot_for(api) as second:  # two instances, one token
        older = asyncio.create_task(first.get_updates(timeout=5))
        await eventually(lambda: api.waiting_polls == 1)
        assert await second.get_updates(timeout=0) == ()
        with pytest.raises(Conflict, match="terminated by other getUpdates request"):
            await older


@async_test
async def test_stop_releases_a_waiting_long_poll() -> None:
    api = FakeBotApi()
    await api.start()
    http = httpx.AsyncClient()
    try:
        held = asyncio.create_task(http.post(f"{api.base_url}{api.token}/getUpdates", data={"timeout": "30"}))
        await eventually(lambda: api.waiting_polls == 1)
        started = asyncio.get_running_loop().time()
        await api.stop()
        assert (await held).json() == {"ok": True, "result": []}
        assert asyncio.get_running_loop().time() - started < 1
    finally:
        await http.aclose()
    await api.stop()  # stopping twice is harmless


@async_test
async def test_json_and_query_string_requests_and_wait_for_timeout() -> None:
    async with FakeBotApi() as api, httpx.AsyncClient(base_url=f"{api.base_url}{api.token}/") as http:
        api.add_user(ALICE)
        markup = {"inline_keyboard": [[{"text": "A", "callback_data": "a"}]]}
        sent = await http.post("sendMessage", json={"chat_id": ALICE.id, "text": "json", "reply_markup": markup})
        assert sent.json()["result"]["reply_markup"] == markup
        got = await http.get("sendMessage", params={"chat_id": str(ALICE.id), "text": "query"})
        assert got.json()["result"]["text"] == "query"
        me = await http.get("GETME")
        assert me.json()["result"]["username"] == "convbot_test_bot"
        bad = await http.post("sendMessage", data={"chat_id": str(ALICE.id), "text": "x", "reply_markup": "{nope"})
        assert bad.status_code == 400
        assert bad.json()["description"] == "Bad Request: can't parse reply keyboard markup JSON object"
        assert api.sent[0].params == {"chat_id": ALICE.id, "text": "json", "reply_markup": markup}
        with pytest.raises(TimeoutError, match=r"sendMessage\(1001: 'json'\)"):
            await api.wait_for(method="sendDocument", timeout=0.05)


def test_user_side_is_usable_without_a_running_server() -> None:
    api = FakeBotApi()
    message = api.user_sends_text(ALICE, "see /help or /start@convbot_test_bot now")
    assert message["entities"] == [
        {"type": "bot_command", "offset": 4, "length": 5},
        {"type": "bot_command", "offset": 13, "length": 23},
    ]
    assert json.loads(json.dumps(api.messages_in(ALICE.id)))[0]["text"].startswith("see")
    with pytest.raises(RuntimeError, match="not started"):
        _ = api.base_url

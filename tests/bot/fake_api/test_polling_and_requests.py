"""Raw HTTP: getUpdates long polling semantics, request encodings, and the user side without a server."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from telegram.error import Conflict

from bot.fake_api import FakeBotApi
from tests.bot.fake_api.support import ALICE, async_test, bot_for, eventually

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

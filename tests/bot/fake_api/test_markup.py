"""Parse modes (HTML, MarkdownV2, Markdown) and their errors, and the length limits Telegram enforces."""

from __future__ import annotations

import pytest
from telegram import InlineKeyboardButton, InlineKeyboardMarkup
from telegram.error import BadRequest

from bot.fake_api import FakeBotApi
from tests.bot.fake_api.support import ALICE, async_test, bot_for


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

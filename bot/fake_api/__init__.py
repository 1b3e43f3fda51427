"""A fake Telegram Bot API server that speaks the real HTTP protocol.

The real python-telegram-bot ``Application`` can be pointed at it and run long polling, while a
test or a console front end plays the human on the other side::

    async with FakeBotApi() as api:
        app = (
            ApplicationBuilder()
            .token(api.token)
            .base_url(api.base_url)
            .base_file_url(api.base_file_url)
            .build()
        )
        ...  # add handlers, initialize, start, start polling
        alice = FakeUser(1001, "Alice")
        api.user_sends_text(alice, "/start")
        reply = await api.wait_for(method="sendMessage", chat_id=alice.id)

What is modelled, and how closely:

* ``POST``/``GET`` on ``/bot<token>/<method>`` with JSON, form-urlencoded, multipart or query
  string parameters (python-telegram-bot sends form data, multipart when it uploads a file, with
  every non-string value JSON-encoded). Method names are case-insensitive, as on Telegram.
* Answers in Telegram's shape: ``{"ok": true, "result": ...}`` or ``{"ok": false, "error_code":
  N, "description": "...", "parameters": {...}}`` with the HTTP status equal to ``error_code``.
  A wrong token gives 401 ``Unauthorized``, an unknown method 404 ``Not Found``.
* ``getUpdates`` long polling with ``offset`` (confirms everything below it; negative offsets
  count from the end), ``limit``, ``timeout`` and ``allowed_updates``; a second concurrent
  ``getUpdates`` ends the first with 409 ``Conflict``, as on Telegram.
* Messages, edits (``message is not modified``, the inline keyboard dropped when an edit carries
  no ``reply_markup``), deletions, callback queries, chat actions, bot commands.
* ``parse_mode`` HTML, MarkdownV2 and Markdown are parsed into plain text plus entities, and
  malformed markup fails with ``can't parse entities`` the way Telegram does; text is trimmed and
  limited to 4096 characters, captions to 1024; callback data to 64 bytes.
* Files: uploads (multipart, ``attach://``, an existing ``file_id``; ``file://`` URIs in local
  mode), ``getFile`` and downloads from ``/file/bot<token>/<file_path>``. The public API limits
  apply: bots download at most 20 MB (``file is too big``) and upload at most 50 MB. With
  ``local_mode=True`` the limits are those of a local Bot API server and ``getFile`` answers with
  an absolute path on this machine, as a local server started with ``--local`` does.

Not modelled: groups and channels, inline mode, payments, webhooks, media other than documents and photos
(a photo the bot sends keeps the bytes it uploaded, where Telegram would re-encode it as JPEG; stickers can
be *received*), flood limits (inject them with :meth:`FakeBotApi.fail_next`).

The object is not thread-safe: call it from the event loop the server runs on.

Modules: ``server`` (FakeBotApi, the HTTP routes), ``users`` (the user side), ``methods`` (the Bot
API methods), ``chats``, ``files``, ``updates`` (the state they share), ``records`` (what the bot
did), ``params`` (reading requests), ``markup`` and ``keyboards`` (formatting and reply markup the
bot sends), ``protocol`` (Telegram's limits and error answers), ``driver`` (the real bot in its own process
against a FakeBotApi on a background thread, for tests and benches).
"""

from bot.fake_api.chats import FakeUser
from bot.fake_api.protocol import DOWNLOAD_LIMIT, LOCAL_UPLOAD_LIMIT, UPLOAD_LIMIT, ApiError
from bot.fake_api.records import BotAction, FailedCall, SentDocument, SentPhoto
from bot.fake_api.server import FakeBotApi

__all__ = [
    "DOWNLOAD_LIMIT",
    "LOCAL_UPLOAD_LIMIT",
    "UPLOAD_LIMIT",
    "ApiError",
    "BotAction",
    "FailedCall",
    "FakeBotApi",
    "FakeUser",
    "SentDocument",
    "SentPhoto",
]

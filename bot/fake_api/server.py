"""FakeBotApi: the HTTP server on 127.0.0.1 and its routes, plus the handle tests and the console hold.

Routes: ``/bot<token>/<method>`` (any HTTP method) runs a Bot API method, ``/file/bot<token>/<path>``
downloads a file getFile named, anything else is 404. The user side comes from :class:`UserSide`.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from aiohttp import web

from bot.fake_api.chats import Chats
from bot.fake_api.files import FileStore
from bot.fake_api.methods import BotApiMethods
from bot.fake_api.params import Params, read_params
from bot.fake_api.protocol import LOCAL_UPLOAD_LIMIT, MB, UPLOAD_LIMIT, ApiError, JSONDict
from bot.fake_api.records import ActionLog, BotAction, FailedCall, Listener, SentDocument, SentPhoto
from bot.fake_api.updates import UpdateQueue
from bot.fake_api.users import UserSide

log = logging.getLogger(__name__)


@dataclass
class _Failure:
    error_code: int
    retry_after: int | None
    description: str | None


class FakeBotApi(UserSide):
    """An in-process Bot API server on 127.0.0.1 plus the user side of the conversation.

    ``base_url`` and ``base_file_url`` are meant for python-telegram-bot's
    ``ApplicationBuilder().base_url(...)`` / ``.base_file_url(...)``, which append the token.
    """

    def __init__(
        self,
        token: str = "123456789:TEST-fake-bot-api-token",
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        bot_username: str = "convbot_test_bot",
        bot_first_name: str = "ConvBot",
        local_mode: bool = False,
    ) -> None:
        self.token = token
        self.local_mode = local_mode
        self._host = host
        self._requested_port = port
        self._port: int | None = None
        self._runner: web.AppRunner | None = None

        bot_id_text = token.split(":", 1)[0]
        bot_user: JSONDict = {
            "id": int(bot_id_text) if bot_id_text.isdigit() else 123456789,
            "is_bot": True,
            "first_name": bot_first_name,
            "username": bot_username,
        }

        # What the bot did, for tests and the console.
        self._actions = ActionLog()
        self.calls: Counter[str] = Counter()
        self.downloads: list[str] = []
        self.server_errors: list[BaseException] = []

        # Conversation state, shared by the user side and the Bot API methods.
        ids = itertools.count(1)
        updates = UpdateQueue()
        chats = Chats(bot_user, updates)
        files = FileStore(ids, local_mode=local_mode)
        super().__init__(bot_user, chats, files, updates, ids)
        self._methods = BotApiMethods(bot_user, chats, files, updates, self._actions)
        self._failures: dict[str, deque[_Failure]] = {}

    # ---------------------------------------------------------------------------------------------
    # Lifecycle

    async def start(self) -> None:
        """Listen on the host and port given (port 0: a free one)."""
        if self._runner is not None:
            raise RuntimeError("FakeBotApi is already running")
        app = web.Application(client_max_size=10 * MB)
        app.router.add_route("*", "/bot{token}/{method}", self._handle_method)
        app.router.add_route("GET", "/file/bot{token}/{file_path:.+}", self._handle_file)
        app.router.add_route("*", "/{tail:.*}", self._handle_not_found)
        runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=2.0, access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self._host, self._requested_port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._port = int(runner.addresses[0][1])
        self._updates.open()
        self._files.open_local_dir()

    async def stop(self) -> None:
        """Release pending long polls, close every connection and stop listening."""
        if self._runner is None:
            return
        self._updates.close()
        runner, self._runner = self._runner, None
        try:
            await runner.cleanup()
        finally:
            self._files.remove_local_dir()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("FakeBotApi is not started")
        return self._port

    @property
    def waiting_polls(self) -> int:
        """How many getUpdates requests are being held open right now (1 while a bot is polling)."""
        return self._updates.waiting_polls

    @property
    def root_url(self) -> str:
        return f"http://{self._host}:{self.port}"

    @property
    def base_url(self) -> str:
        """For ``ApplicationBuilder().base_url()``: python-telegram-bot appends the token."""
        return f"{self.root_url}/bot"

    @property
    def base_file_url(self) -> str:
        """For ``ApplicationBuilder().base_file_url()``: python-telegram-bot appends the token."""
        return f"{self.root_url}/file/bot"

    # ---------------------------------------------------------------------------------------------
    # Observing the bot

    @property
    def sent(self) -> list[BotAction]:
        """Every successful call that changed what a user sees (or answered them), oldest first."""
        return self._actions.sent

    @property
    def failed(self) -> list[FailedCall]:
        """Every call the API answered with an error, oldest first."""
        return self._actions.failed

    def documents_sent(self, chat_id: int) -> list[SentDocument]:
        return [a.document for a in self.sent if a.document is not None and a.chat_id == chat_id]

    def photos_sent(self, chat_id: int) -> list[SentPhoto]:
        return [a.photo for a in self.sent if a.photo is not None and a.chat_id == chat_id]

    def commands(self, scope: JSONDict | None = None, language_code: str = "") -> list[JSONDict]:
        """The command list the bot set for a scope (default scope) and language."""
        return self._methods.commands(scope, language_code)

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(action)`` for every bot action as it is recorded (console mode)."""
        self._actions.add_listener(listener)

    def remove_listener(self, listener: Listener) -> None:
        self._actions.remove_listener(listener)

    async def wait_for(
        self,
        predicate: Callable[[BotAction], bool] | None = None,
        *,
        method: str | None = None,
        chat_id: int | None = None,
        timeout: float = 5.0,
        since: int = 0,
    ) -> BotAction:
        """The first action in ``sent[since:]`` matching all of the filters, waiting for it if needed.

        Raises ``TimeoutError`` (listing what the bot did do) when none comes within ``timeout``.
        """

        def matches(action: BotAction) -> bool:
            return (
                (method is None or action.method == method)
                and (chat_id is None or action.chat_id == chat_id)
                and (predicate is None or predicate(action))
            )

        return await self._actions.wait_for(matches, timeout=timeout, since=since)

    # ---------------------------------------------------------------------------------------------
    # Failure injection

    def fail_next(
        self,
        method: str,
        error_code: int = 429,
        retry_after: int | None = 1,
        description: str | None = None,
        *,
        times: int = 1,
    ) -> None:
        """Make the next ``times`` calls of ``method`` fail with ``error_code`` in Telegram's shape.

        A 429 carries ``parameters.retry_after`` and the description "Too Many Requests: retry after
        N"; other codes get Telegram's usual description unless one is given.
        """
        name = self._methods.canonical_name(method)
        if name is None:
            raise ValueError(f"unknown Bot API method {method!r}")
        queue = self._failures.setdefault(name, deque())
        queue.extend(_Failure(error_code, retry_after, description) for _ in range(times))

    # ---------------------------------------------------------------------------------------------
    # HTTP

    async def _handle_method(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] != self.token:
            return self._error_response(ApiError(401, "Unauthorized"))
        requested = request.match_info["method"]
        name = self._methods.canonical_name(requested)
        self.calls[name or requested] += 1
        if name is None:
            return self._error_response(ApiError(404, "Not Found"))
        params = Params({}, {})
        try:
            params = await read_params(request, LOCAL_UPLOAD_LIMIT if self.local_mode else UPLOAD_LIMIT)
            failures = self._failures.get(name)
            if failures:
                failure = failures.popleft()
                error = ApiError.injected(failure.error_code, failure.retry_after, failure.description)
                self.failed.append(FailedCall(name, error.error_code, error.description, params.public(), True))
                return self._error_response(error)
            result = await self._methods.call(name, params)
        except ApiError as error:
            self.failed.append(FailedCall(name, error.error_code, error.description, params.public()))
            return self._error_response(error)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug in the fake: answer like Telegram's 500, keep it for the tests
            log.exception("fake Bot API failed on %s", name)
            self.server_errors.append(exc)
            return self._error_response(ApiError(500, "Internal Server Error"))
        return web.json_response({"ok": True, "result": result})

    async def _handle_file(self, request: web.Request) -> web.StreamResponse:
        stored = self._files.by_path(request.match_info["file_path"])
        if request.match_info["token"] != self.token or stored is None:
            return self._error_response(ApiError(404, "Not Found"))
        self.downloads.append(request.match_info["file_path"])
        return web.Response(body=stored.data, content_type="application/octet-stream")

    async def _handle_not_found(self, request: web.Request) -> web.StreamResponse:
        return self._error_response(ApiError(404, "Not Found"))

    @staticmethod
    def _error_response(error: ApiError) -> web.Response:
        return web.json_response(error.to_json(), status=error.error_code)

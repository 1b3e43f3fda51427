"""What the fake Bot API tests share: two users, a time-limited async test runner, a Bot for an api."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine
from typing import Any

from telegram import Bot

from bot.fake_api import FakeBotApi, FakeUser

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

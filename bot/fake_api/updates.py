"""The updates waiting for the bot, and getUpdates long polling over them."""

from __future__ import annotations

import asyncio
import contextlib
import copy

from bot.fake_api.protocol import CONFLICT_DESCRIPTION, ApiError, JSONDict

# Update types Telegram leaves out unless a bot asks for them in allowed_updates.
_OPT_IN_UPDATE_TYPES = frozenset({"chat_member", "message_reaction", "message_reaction_count"})


class UpdateQueue:
    """Updates in order of arrival until the bot confirms them with a getUpdates offset."""

    def __init__(self) -> None:
        # The update types the bot last asked for; None: Telegram's default.
        self.allowed_updates: frozenset[str] | None = None
        self.waiting_polls = 0
        self._updates: list[JSONDict] = []
        self._next_update_id = 1
        self._poll_generation = 0
        self._changed = asyncio.Event()
        self._closing = False

    @property
    def pending(self) -> int:
        return len(self._updates)

    def enqueue(self, kind: str, payload: JSONDict) -> None:
        wanted = kind not in _OPT_IN_UPDATE_TYPES if self.allowed_updates is None else kind in self.allowed_updates
        if not wanted:
            return
        self._updates.append({"update_id": self._next_update_id, kind: payload})
        self._next_update_id += 1
        self._notify()

    def drop_pending(self) -> None:
        self._updates.clear()

    def open(self) -> None:
        """Hold getUpdates requests until an update comes or their timeout ends (the server started)."""
        self._closing = False

    def close(self) -> None:
        """Answer every held getUpdates request now (the server is stopping)."""
        self._closing = True
        self._notify()

    async def poll(self, offset: int | None, limit: int, timeout: float) -> list[JSONDict]:
        """What getUpdates answers: confirm below ``offset``, then wait up to ``timeout`` for an update."""
        # A newer getUpdates ends an older one that is still waiting, as on Telegram.
        self._poll_generation += 1
        generation = self._poll_generation
        self._notify()

        if offset is not None:
            if offset < 0:
                del self._updates[: max(len(self._updates) + offset, 0)]
            else:
                self._updates = [u for u in self._updates if u["update_id"] >= offset]

        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if generation != self._poll_generation:
                raise ApiError(409, CONFLICT_DESCRIPTION)
            if self._updates or self._closing:
                return copy.deepcopy(self._updates[:limit])
            remaining = deadline - loop.time()
            if remaining <= 0:
                return []
            changed = self._changed
            self.waiting_polls += 1
            try:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(remaining):
                        await changed.wait()
            finally:
                self.waiting_polls -= 1

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

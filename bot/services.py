"""The long-lived things every handler needs, created in post_init and closed in post_shutdown, and
the handlers' context type that hands them out (`context.services`)."""

from __future__ import annotations

import asyncio
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from telegram.ext import CallbackContext, ExtBot

from bot.settings import BotSettings
from bot.state import ChatState
from jobs.catalog import Catalog
from jobs.service import JobService


def _inspect_to_dict(path: str, work_dir: str) -> dict[str, Any]:
    """Runs in the inspection process: a hostile file can crash that process, not the bot."""
    from converter.inspection import inspect

    return inspect(Path(path), work_dir=Path(work_dir)).to_dict()


@dataclass
class BotServices:
    settings: BotSettings
    jobs: JobService
    state: ChatState = field(default_factory=ChatState)
    status_messages: dict[int, tuple[int, int]] = field(default_factory=dict)  # job id -> (chat, message)
    # Files sent while their job ran, not again at its end: job id -> {(kind, quantization): Telegram file id}.
    sent_early: dict[int, dict[tuple[str, str], str | None]] = field(default_factory=dict)
    _inspector: ProcessPoolExecutor | None = None

    @property
    def catalog(self) -> Catalog:
        """Users, uploads and jobs as the bot reads and records them (read-only views)."""
        return self.jobs.catalog

    async def inspect(self, path: Path, work_dir: Path) -> dict[str, Any]:
        """The model's summary, computed in a separate process so the event loop never waits on it."""
        if self._inspector is None:
            self._inspector = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._inspector, _inspect_to_dict, str(path), str(work_dir))
        except Exception as error:
            if type(error).__name__ == "BrokenProcessPool":  # the file crashed the inspector: start a new one
                self._inspector = None
            raise

    def close(self) -> None:
        if self._inspector is not None:
            self._inspector.shutdown(cancel_futures=True)
        self.jobs.stop()


class BotContext(CallbackContext[ExtBot[None], dict[Any, Any], dict[Any, Any], dict[Any, Any]]):
    """What every handler receives (registered with `ContextTypes(context=BotContext)`)."""

    @property
    def services(self) -> BotServices:
        found: BotServices = self.application.bot_data["services"]
        return found

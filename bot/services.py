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
from converter.calibration import InputSlot
from converter.calibration_check import SamplesCheck
from jobs.catalog import Catalog
from jobs.service import JobService


def _inspect_to_dict(path: str, work_dir: str) -> dict[str, Any]:
    """Runs in the inspection process: a hostile file can crash that process, not the bot."""
    from converter.inspection import inspect

    return inspect(Path(path), work_dir=Path(work_dir)).to_dict()


def _check_samples(
    path: str, slots: list[InputSlot], input_range: str | None, work_dir: str, max_mb: float
) -> SamplesCheck:
    """Runs in the inspection process: a hostile archive is unpacked and read there, not in the bot."""
    from converter.calibration_check import check_samples

    return check_samples(Path(path), slots, input_range, Path(work_dir), max_mb)


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
        summary: dict[str, Any] = await self._in_inspector(_inspect_to_dict, str(path), str(work_dir))
        return summary

    async def check_samples(
        self, path: Path, slots: list[InputSlot], input_range: str | None, work_dir: Path
    ) -> SamplesCheck:
        """int8 calibration samples read as the conversion will read them, in the inspection process."""
        max_mb = self.settings.max_calibration_mb
        check: SamplesCheck = await self._in_inspector(
            _check_samples, str(path), slots, input_range, str(work_dir), max_mb
        )
        return check

    async def _in_inspector(self, function: Any, *args: Any) -> Any:
        if self._inspector is None:
            self._inspector = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._inspector, function, *args)
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

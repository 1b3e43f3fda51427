"""Following jobs in the chat: one status message per job, edited through its stages (throttled),
then the files and a short report. Job events arrive on the job service's thread and are handed
to the bot's event loop here."""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from collections.abc import Awaitable, Callable
from pathlib import PurePosixPath
from typing import Any, TypeVar

from telegram.error import BadRequest, NetworkError, TimedOut
from telegram.ext import Application

from bot.services import BotContext, BotServices
from bot.texts import Texts, texts_for
from bot.views import CAPTION_LIMIT, cancel_keyboard, caption_text, chart_caption, report_text
from converter.archive import zip_folder
from converter.units import format_size
from jobs.events import FINAL_KINDS, EventKind, FailureReason, JobEvent, Stage

log = logging.getLogger(__name__)
T = TypeVar("T")
EDIT_INTERVAL_SECONDS = 1.5  # Telegram limits edits; stages can follow each other within milliseconds
NETWORK_ATTEMPTS = 4


async def with_network_retries(call: Callable[[], Awaitable[T]], *, retry_timeouts: bool = True) -> T:
    """Retry a Bot API call on network errors (flood limits are waited out by the rate limiter).

    A timed-out upload may still have been delivered (PTB #4188), so uploads pass
    retry_timeouts=False: a user should not get the same file twice.
    """
    for attempt in range(1, NETWORK_ATTEMPTS + 1):
        try:
            return await call()
        except BadRequest:
            raise  # NetworkError's subclass for requests Telegram refused: retrying changes nothing
        except TimedOut:
            if not retry_timeouts or attempt == NETWORK_ATTEMPTS:
                raise
        except NetworkError:
            if attempt == NETWORK_ATTEMPTS:
                raise
        await asyncio.sleep(0.5 * 2**attempt)
    raise AssertionError("unreachable")


class ProgressReporter:
    """Turns job events into chat messages."""

    def __init__(self, application: Application[Any, Any, Any, Any, Any, Any], bot_services: BotServices) -> None:
        self.application = application
        self.services = bot_services
        self.loop = asyncio.get_running_loop()
        self.last_edit: dict[int, float] = {}
        self.job_locks: dict[int, asyncio.Lock] = {}

    def on_event(self, event: JobEvent) -> None:
        """Called on the job service's thread."""
        asyncio.run_coroutine_threadsafe(self._handle(event), self.loop)

    async def _handle(self, event: JobEvent) -> None:
        # One job's events in the order they came: a file is sent before the report that follows it.
        lock = self.job_locks.setdefault(event.job_id, asyncio.Lock())
        async with lock:
            await self._report(event)
        if event.kind in FINAL_KINDS:
            self.job_locks.pop(event.job_id, None)
            self.services.sent_early.pop(event.job_id, None)

    async def _report(self, event: JobEvent) -> None:
        try:
            chat_id, language = await asyncio.to_thread(self._owner, event.user_id)
            if chat_id is None:
                return  # a CLI user: no chat
            texts = texts_for(language)
            if event.kind == EventKind.STAGE and isinstance(event.stage, Stage):
                if time.monotonic() - self.last_edit.get(event.job_id, 0.0) < EDIT_INTERVAL_SECONDS:
                    return
                stage = texts.stages[event.stage]
                await self._status(event.job_id, chat_id, texts.stage.format(job_id=event.job_id, stage=stage), texts)
            elif event.kind == EventKind.ARTIFACT and event.artifact is not None:
                await self._send_early(event.job_id, chat_id, texts, event.artifact)
            elif event.kind == EventKind.SUCCEEDED:  # with a message: some targets were withheld (partial)
                done = texts.partial.format(job_id=event.job_id, reason=event.message) if event.message else None
                await self._status(
                    event.job_id, chat_id, done or texts.succeeded.format(job_id=event.job_id), texts, final=True
                )
                await send_results(self.application, self.services, event.job_id, chat_id, texts)
            elif event.kind == EventKind.FAILED:
                text = texts.failed.format(job_id=event.job_id, reason=failure_reason(texts, event))
                await self._status(event.job_id, chat_id, text, texts, final=True)
            elif event.kind == EventKind.CANCELLED:
                await self._status(
                    event.job_id, chat_id, texts.cancelled.format(job_id=event.job_id), texts, final=True
                )
            elif event.kind in (EventKind.INTERRUPTED, EventKind.WORKER_LOST):
                text = texts.interrupted if event.kind == EventKind.INTERRUPTED else texts.worker_lost
                if event.kind == EventKind.INTERRUPTED:  # a new bot: the old status message is not known to it
                    self.services.status_messages.pop(event.job_id, None)
                await self._status(event.job_id, chat_id, text.format(job_id=event.job_id), texts)
            elif event.kind == EventKind.WAITING_FOR_CONVERTER:
                text = texts.waiting_for_converter.format(job_id=event.job_id)
                await self._status(event.job_id, chat_id, text, texts)
        except Exception:  # one chat's trouble must not stop the others' progress
            log.exception("could not report %s", event)

    async def _send_early(self, job_id: int, chat_id: int, texts: Texts, ready: dict[str, Any]) -> None:
        """A file of a running job, as soon as it is converted and verified; the status says which."""
        name = upload_name(ready["path"], ready["folder"])
        await self._status(job_id, chat_id, texts.sending.format(job_id=job_id, name=name), texts)
        sent = self.services.sent_early.setdefault(job_id, {})
        key = (ready["kind"], ready["quantization"])
        sent[key] = await send_artifact(
            self.application.bot,
            self.services,
            job_id,
            chat_id,
            texts,
            ready["kind"],
            ready["quantization"],
            ready["path"],
            ready["check"],
        )

    def _owner(self, user_id: int) -> tuple[int | None, str]:
        user = self.services.catalog.user(user_id)
        return (None, "") if user is None else (user.telegram_id, user.language)

    async def _status(self, job_id: int, chat_id: int, text: str, texts: Texts, final: bool = False) -> None:
        """Edit the job's status message, or send one if it has none yet."""
        self.last_edit[job_id] = time.monotonic()
        keyboard = None if final else cancel_keyboard(texts, job_id)
        known = self.services.status_messages.get(job_id)
        bot = self.application.bot
        if known is not None:
            try:
                await with_network_retries(
                    lambda: bot.edit_message_text(text, chat_id=known[0], message_id=known[1], reply_markup=keyboard)
                )
                return
            except BadRequest as error:
                if "not modified" in str(error).lower():
                    return
                log.warning("could not edit the status of job %s: %s", job_id, error)
        sent = await with_network_retries(lambda: bot.send_message(chat_id, text, reply_markup=keyboard))
        self.services.status_messages[job_id] = (chat_id, sent.message_id)


def failure_reason(texts: Texts, event: JobEvent) -> str:
    """Why a job failed, in the user's language; the converter's own message (English) as it is."""
    reason = event.reason or FailureReason.CONVERSION_ERROR
    return texts.reasons[reason].format(message=event.message, **event.reason_args)


async def send_results(
    target: Application[Any, Any, Any, Any, Any, Any] | BotContext,
    bot_services: BotServices,
    job_id: int,
    chat_id: int,
    texts: Texts,
    resend: bool = False,
) -> None:
    """The job's files as documents with their check in the caption, then the report."""
    bot = target.bot
    catalog = bot_services.catalog
    job = await asyncio.to_thread(catalog.job_files, job_id)
    if job is None:
        return
    checks = {(c["target"], c["quantization"]): c for c in job.result.get("validation", [])}
    sent_early = {} if resend else bot_services.sent_early.pop(job_id, {})
    for file in job.files:
        kind, quant, known_id = file.kind, file.quantization, file.telegram_file_id
        if (kind, quant) in sent_early:  # sent while the job ran
            early_id = sent_early[(kind, quant)]
            if early_id and not known_id:
                await asyncio.to_thread(catalog.remember_file_id, file.artifact_id, early_id)
            continue
        if file.is_chart:  # recorded after the files: it follows them
            caption = chart_caption(texts, job.result.get("quant_search", {}))
            new_id = await send_chart(bot, bot_services, job_id, chat_id, caption, file.path, known_id)
        else:
            new_id = await send_artifact(
                bot, bot_services, job_id, chat_id, texts, kind, quant, file.path, checks.get((kind, quant)), known_id
            )
        if new_id and not known_id:
            await asyncio.to_thread(catalog.remember_file_id, file.artifact_id, new_id)
    if not resend:
        report = report_text(texts, job_id, job.result)[:4000]
        await with_network_retries(lambda: bot.send_message(chat_id, report))


def upload_name(key: str, folder: bool) -> str:
    """The file name a user receives: a folder (a TF.js model, a SavedModel) goes as a zip of it."""
    name = PurePosixPath(key).name
    return f"{name}.zip" if folder else name


async def send_artifact(
    bot: Any,
    bot_services: BotServices,
    job_id: int,
    chat_id: int,
    texts: Texts,
    kind: str,
    quant: str,
    key: str,
    check: dict[str, Any] | None,
    file_id: str | None = None,
) -> str | None:
    """One stored file with its verdict in the caption; returns Telegram's id for it (to send it again by id)."""
    scratch = bot_services.settings.tmp_dir / f"send-{job_id}-{kind}-{quant}"
    try:
        path = await asyncio.to_thread(bot_services.catalog.local_file, key, scratch)
        name = upload_name(key, path.is_dir())
        document = path
        if path.is_dir():
            document = scratch / "zip" / name
            await asyncio.to_thread(zip_folder, path, document)
        caption = caption_text(texts, check, name, format_size(document.stat().st_size), quant)
        sent = await bot.send_document(
            chat_id, document=file_id or document.read_bytes(), filename=name, caption=caption[:1000]
        )
    finally:
        await asyncio.to_thread(shutil.rmtree, scratch, True)  # fetched and zipped copies, not the stored file
    return sent.document.file_id if sent.document is not None else None


async def send_chart(
    bot: Any,
    bot_services: BotServices,
    job_id: int,
    chat_id: int,
    caption: str,
    key: str,
    file_id: str | None = None,
) -> str | None:
    """quant=auto|compare's size-against-error PNG as a photo: seen in the chat at once, where a document would
    be a file to download and open. Returns Telegram's id for it."""
    scratch = bot_services.settings.tmp_dir / f"send-{job_id}-chart"
    try:
        photo = file_id or (await asyncio.to_thread(bot_services.catalog.local_file, key, scratch)).read_bytes()
        sent = await bot.send_photo(chat_id, photo=photo, caption=caption[:CAPTION_LIMIT])
    finally:
        await asyncio.to_thread(shutil.rmtree, scratch, True)
    return sent.photo[-1].file_id if sent.photo else None

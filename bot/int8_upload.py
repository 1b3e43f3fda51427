"""The document a chat sends while an int8 conversion waits for samples: refused with a short reason (the
wait goes on) or checked, stored where the job's worker reads it, and the conversion started."""

from __future__ import annotations

import asyncio
import logging
import shutil
import uuid

from telegram import Update

from bot.conversions import start_conversion
from bot.int8_samples import input_slots
from bot.services import BotContext
from bot.state import Draft
from bot.uploads import record_user, safe_file_name, user_texts
from converter.errors import ConvbotError
from converter.units import format_size

log = logging.getLogger(__name__)


async def receive_samples(update: Update, context: BotContext, draft: Draft) -> None:
    """Take the document as the calibration set of the draft's conversion, then start it (or ask the range)."""
    message, chat = update.effective_message, update.effective_chat
    document = message.document if message is not None else None
    if message is None or document is None or chat is None:
        return
    bot_services, texts = context.services, user_texts(update)
    limit = int(bot_services.settings.max_calibration_mb * 1024 * 1024)
    if document.file_size and document.file_size > limit:  # refused before it is downloaded
        await message.reply_text(
            texts.samples_too_big.format(size=format_size(document.file_size), limit=format_size(limit))
        )
        return
    name = safe_file_name(document.file_name)
    model = await asyncio.to_thread(bot_services.catalog.model, draft.model_id)
    if model is None:  # the draft's model is no longer kept
        draft.awaiting_samples = False
        await message.reply_text(texts.send_model_first)
        return
    folder = bot_services.settings.tmp_dir / f"samples-{uuid.uuid4().hex}"
    folder.mkdir(parents=True)
    try:
        path = folder / name
        await (await document.get_file()).download_to_drive(path)
        slots = input_slots(model.summary, draft)
        try:
            check = None if slots is None else await bot_services.check_samples(path, slots, draft.input_range, folder)
        except ConvbotError as error:  # the wait goes on: the next document is tried again
            await message.reply_text(texts.bad_samples.format(name=name, reason=error.message))
            return
        except Exception:  # the checking process died on this file: a damaged or hostile upload
            log.exception("checking the samples %s crashed", name)
            await message.reply_text(texts.bad_samples.format(name=name, reason="the file is damaged"))
            return
        draft.samples = await asyncio.to_thread(bot_services.catalog.store_samples, path, name)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    draft.awaiting_samples = False
    if check is not None:
        draft.samples_need_range = check.needs_input_range
        classes = texts.samples_classes.format(count=check.classes) if check.classes else ""
        await message.reply_text(texts.samples_taken.format(count=check.samples, name=name, classes=classes))
    user = await record_user(bot_services, update)
    await start_conversion(chat.id, user, draft, context, texts)

"""Receiving a model: refuse what is too big or not a file, download, inspect out of process,
record it, and answer with its summary."""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

from telegram import Update

from bot.services import BotContext, BotServices
from bot.state import Draft
from bot.texts import Texts, texts_for
from bot.views import spec_key, summary_keyboard, summary_text
from converter.errors import ConvbotError
from converter.units import format_size
from jobs.catalog import UserView

log = logging.getLogger(__name__)


def user_texts(update: Update) -> Texts:
    user = update.effective_user
    return texts_for(user.language_code if user else None)


def safe_file_name(name: str | None) -> str:
    """A file name without folders or odd characters; 'model' if nothing is left."""
    base = Path(name or "model").name
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", base).strip("._") or "model"
    return cleaned[:120]


async def record_user(bot_services: BotServices, update: Update) -> UserView:
    tg_user = update.effective_user
    assert tg_user is not None
    return await asyncio.to_thread(
        bot_services.catalog.record_user, tg_user.id, tg_user.full_name, tg_user.language_code or ""
    )


async def receive_model(update: Update, context: BotContext) -> bool:
    """Download the document, inspect it and make it the chat's current model; False if it was refused."""
    message = update.effective_message
    document = message.document if message is not None else None
    if message is None or document is None:
        return False
    bot_services, texts = context.services, user_texts(update)
    settings = bot_services.settings
    name = safe_file_name(document.file_name)
    if document.file_size and document.file_size > settings.max_upload_bytes:
        text = texts.too_big.format(size=format_size(document.file_size), limit=format_size(settings.max_upload_bytes))
        if update.effective_user and update.effective_user.id in settings.admin_ids:
            text += texts.too_big_admin_hint
        await message.reply_text(text)
        return False
    user = await record_user(bot_services, update)
    log.info("user=%d telegram_id=%s upload name=%r size=%s", user.id, user.telegram_id, name, document.file_size)
    await message.reply_text(texts.downloading.format(name=name))
    folder = settings.tmp_dir / f"upload-{uuid.uuid4().hex}"
    folder.mkdir(parents=True)
    try:
        path = folder / name
        telegram_file = await document.get_file()
        await telegram_file.download_to_drive(path)
        try:
            summary = await bot_services.inspect(path, folder / "inspect")
        except ConvbotError as error:
            await message.reply_text(texts.bad_model.format(name=name, reason=error.message))
            return False
        except Exception:  # the inspector died on this file: a damaged or hostile upload
            log.exception("inspection of %s crashed", name)
            await message.reply_text(texts.bad_model.format(name=name, reason="the file is damaged"))
            return False
        model = await asyncio.to_thread(bot_services.catalog.store_upload, user.id, path, name, summary)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    draft = new_draft(model.id, summary)
    assert update.effective_chat is not None
    bot_services.state.drafts[update.effective_chat.id] = draft
    await show_summary(update.effective_chat.id, context, texts, name, summary, draft)
    return True


def new_draft(model_id: int, summary: dict[str, Any]) -> Draft:
    """Start from the suggestions: required inputs and every suggested output."""
    inputs = [spec_key(s) for s in summary["suggested_inputs"] if not s.get("optional")]
    outputs = [spec_key(s) for s in summary["suggested_outputs"]]
    return Draft(model_id=model_id, inputs=inputs, outputs=outputs)


async def show_summary(
    chat_id: int, context: BotContext, texts: Texts, name: str, summary: dict[str, Any], draft: Draft
) -> None:
    key = context.services.state.open_menu(chat_id, "summary", model_id=draft.model_id)
    await context.bot.send_message(
        chat_id, summary_text(texts, name, summary)[:4000], reply_markup=summary_keyboard(texts, key, draft)
    )


async def refuse_media(update: Update, context: BotContext) -> None:
    """Photos, stickers, voice and the like: ask for a file."""
    if update.effective_message:
        await update.effective_message.reply_text(user_texts(update).not_a_document)

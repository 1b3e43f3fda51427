"""Slash commands: /start, /help, /nodes, /convert, /jobs, /job, /cancel and the admin's /stats
and /cleanup."""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import dataclass

from telegram import Message, Update

from bot.conversions import parse_convert_args, start_conversion
from bot.int8_upload import receive_samples
from bot.progress import send_results
from bot.services import BotContext, BotServices
from bot.texts import Texts
from bot.uploads import new_draft, receive_model, record_user, user_texts
from bot.views import job_line, nodes_page
from converter.errors import ConvbotError
from converter.units import format_size, tree_size
from jobs.catalog import EXPIRED, ModelView, UserView


@dataclass(frozen=True)
class Request:
    """What most commands start from: where to answer, in which language, for whom."""

    message: Message
    chat_id: int
    texts: Texts
    services: BotServices
    user: UserView


async def _request(update: Update, context: BotContext) -> Request | None:
    message, chat = update.effective_message, update.effective_chat
    if message is None or chat is None:
        return None
    user = await record_user(context.services, update)
    return Request(message, chat.id, user_texts(update), context.services, user)


async def _current_model_or_ask(request: Request) -> ModelView | None:
    """The chat's current model; without one, tell the user to send one first."""
    current = await asyncio.to_thread(request.services.catalog.current_model, request.user.id)
    if current is None:
        await request.message.reply_text(request.texts.send_model_first)
    return current


async def show_help(update: Update, context: BotContext) -> None:
    """Explain what the bot does, with an example."""
    if update.effective_message:
        await update.effective_message.reply_text(user_texts(update).help)


async def list_nodes(update: Update, context: BotContext) -> None:
    """List the current model's nodes, filtered by a part of their name or op, from the stored inspection."""
    request = await _request(update, context)
    if request is None or (current := await _current_model_or_ask(request)) is None:
        return
    texts, message = request.texts, request.message
    name, summary = current.name, current.summary
    text = " ".join(context.args or []).strip()
    nodes = summary.get("nodes") or [
        {"name": s.get("key") or s["name"], "op": "input", "shape": s.get("shape")} for s in summary["suggested_inputs"]
    ] + [
        {"name": s.get("key") or s["name"], "op": "output", "shape": s.get("shape")}
        for s in summary["suggested_outputs"]
    ]
    if text:
        needle = text.lower()
        nodes = [n for n in nodes if needle in n["name"].lower() or needle in n["op"].lower()]
    if not nodes:
        await message.reply_text(texts.nodes_none.format(text=text))
        return
    key = request.services.state.open_menu(request.chat_id, "nodes", name=name, nodes=nodes, filter=text)
    page_text, keyboard = nodes_page(texts, key, name, nodes, text, 0)
    await message.reply_text(page_text, reply_markup=keyboard)


async def receive_document(update: Update, context: BotContext) -> None:
    """A model file; a caption that is a /convert command (`/convert tflite quant=float16`) then runs on it.
    While an int8 conversion waits for samples, the document is its calibration set instead."""
    message = update.effective_message
    draft = context.services.state.drafts.get(update.effective_chat.id) if update.effective_chat else None
    if draft is not None and draft.awaiting_samples:
        await receive_samples(update, context, draft)
        return
    arguments = caption_command(message.caption if message else None, "convert")
    if await receive_model(update, context) and arguments is not None:
        await convert_with_arguments(update, context, arguments)


def caption_command(caption: str | None, command: str) -> list[str] | None:
    """The arguments of `/command ...` (or `/command@bot ...`) written as a caption; None if it is not one."""
    words = (caption or "").split()
    if not words or words[0].split("@", 1)[0].lower() != f"/{command}":
        return None
    return words[1:]


async def convert_command(update: Update, context: BotContext) -> None:
    """Convert the current model in one line."""
    await convert_with_arguments(update, context, list(context.args or []))


async def convert_with_arguments(update: Update, context: BotContext, arguments: list[str]) -> None:
    request = await _request(update, context)
    if request is None or (current := await _current_model_or_ask(request)) is None:
        return
    drafts = request.services.state.drafts
    draft = drafts.get(request.chat_id)
    if draft is None or draft.model_id != current.id:
        draft = new_draft(current.id, current.summary)
    try:
        draft = parse_convert_args(arguments, draft)
    except ConvbotError as error:
        await request.message.reply_text(error.message)
        return
    drafts[request.chat_id] = draft
    await start_conversion(request.chat_id, request.user, draft, context, request.texts)


def parse_job_id(text: str) -> int | None:
    text = text.strip().removeprefix("#")
    return int(text) if text.isdigit() else None


async def list_jobs(update: Update, context: BotContext) -> None:
    """The user's recent jobs: id, model, targets, status keyword, age."""
    request = await _request(update, context)
    if request is None:
        return
    texts = request.texts
    jobs = await asyncio.to_thread(request.services.catalog.recent_jobs, request.user.id)
    if not jobs:
        await request.message.reply_text(texts.jobs_none)
        return
    await request.message.reply_text("\n".join([texts.jobs_title] + [job_line(texts, job) for job in jobs]))


async def show_job(update: Update, context: BotContext) -> None:
    """One job of the user's; its files again if they are still kept."""
    request = await _request(update, context)
    if request is None:
        return
    message, texts, bot_services = request.message, request.texts, request.services
    argument = " ".join(context.args or [])
    job_id = parse_job_id(argument)
    job = None if job_id is None else await asyncio.to_thread(bot_services.catalog.user_job, request.user.id, job_id)
    if job is None:
        await message.reply_text(texts.job_not_found.format(job=argument or "?"))
        return
    await message.reply_text(job_line(texts, job))
    if job.status == EXPIRED:
        await message.reply_text(texts.files_expired.format(job_id=job.job_id))
    elif job.delivered:
        await send_results(context, bot_services, job.job_id, request.chat_id, texts, resend=True)


async def cancel(update: Update, context: BotContext) -> None:
    """Cancel the job given (`/cancel 12`), else the user's newest unfinished job, else the dialogue in progress."""
    request = await _request(update, context)
    if request is None:
        return
    message, texts, bot_services, user = request.message, request.texts, request.services, request.user
    argument = " ".join(context.args or [])
    if argument:
        job_id = parse_job_id(argument)
        if job_id is None or not await asyncio.to_thread(bot_services.jobs.cancel, job_id, user.id):
            await message.reply_text(texts.job_not_cancellable.format(job=argument))
        return  # else the job's status message says "cancelled"
    draft = bot_services.state.drafts.get(request.chat_id)
    if draft is not None and (draft.awaiting_samples or draft.samples):  # the int8 question just asked
        draft.awaiting_samples, draft.samples = False, None
        await message.reply_text(texts.cancelled_dialogue)
        return
    job_id = await asyncio.to_thread(bot_services.catalog.latest_unfinished_job, user.id)
    if job_id is not None and await asyncio.to_thread(bot_services.jobs.cancel, job_id, user.id):
        return
    if draft is not None and (draft.awaiting_shape or draft.picker_key):
        draft.awaiting_shape, draft.picker_key = None, None
        await message.reply_text(texts.cancelled_dialogue)
        return
    await message.reply_text(texts.nothing_to_cancel)


async def _admin_request(update: Update, context: BotContext) -> tuple[Message, Texts, BotServices] | None:
    """The message, texts and services of an admin's command; anyone else is told it is for admins."""
    message = update.effective_message
    if message is None:
        return None
    texts, bot_services = user_texts(update), context.services
    user = update.effective_user
    if user is None or user.id not in bot_services.settings.admin_ids:
        await message.reply_text(texts.not_admin)
        return None
    return message, texts, bot_services


async def show_stats(update: Update, context: BotContext) -> None:
    """Admins: users, jobs by status, disk used."""
    if (admin := await _admin_request(update, context)) is None:
        return
    message, texts, bot_services = admin
    counts = await asyncio.to_thread(bot_services.catalog.counts)
    disk = shutil.disk_usage(bot_services.settings.data_dir)
    used = await asyncio.to_thread(tree_size, bot_services.settings.data_dir)
    jobs = ", ".join(f"{status} {count}" for status, count in sorted(counts.jobs_by_status.items())) or "0"
    usage = f"{format_size(used)} (free {format_size(disk.free)})"
    if bot_services.settings.storage_url:  # uploads and files in S3: the local disk holds the database and temp files
        stored = await asyncio.to_thread(bot_services.catalog.stored_bytes)
        usage += f"; {bot_services.settings.storage_url}: {format_size(stored)}"
    await message.reply_text(texts.stats.format(users=counts.users, jobs=jobs, disk=usage))


async def run_cleanup_now(update: Update, context: BotContext) -> None:
    """Admins: run the cleanup now and report what it removed."""
    if (admin := await _admin_request(update, context)) is None:
        return
    message, texts, bot_services = admin
    summary = await asyncio.to_thread(bot_services.catalog.clean_up_now)
    await message.reply_text(texts.cleanup_done.format(summary=summary))

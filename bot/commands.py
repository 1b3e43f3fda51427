"""Slash commands: /start, /help, /nodes, /convert, /jobs, /job, /cancel and the admin's /stats
and /cleanup."""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from telegram import Message, Update
from telegram.ext import ContextTypes

from bot.conversions import parse_convert_args, start_conversion
from bot.services import BotServices, services
from bot.texts import Texts
from bot.uploads import new_draft, receive_model, record_user, user_texts
from bot.views import nodes_page
from converter.errors import ConvbotError
from converter.units import format_size, tree_size
from db.models import Job, JobStatus, UploadedModel, User, utcnow


@dataclass(frozen=True)
class Request:
    """What most commands start from: where to answer, in which language, for whom."""

    message: Message
    chat_id: int
    texts: Texts
    services: BotServices
    user: User


async def _request(update: Update, context: ContextTypes.DEFAULT_TYPE) -> Request | None:
    message, chat = update.effective_message, update.effective_chat
    if message is None or chat is None:
        return None
    bot_services = services(context)
    user = await record_user(bot_services, update)
    return Request(message, chat.id, user_texts(update), bot_services, user)


async def _current_model_or_ask(request: Request) -> tuple[int, str, dict[str, Any]] | None:
    """The chat's current model; without one, tell the user to send one first."""
    current = await asyncio.to_thread(_current_model, request.services, request.user.id)
    if current is None:
        await request.message.reply_text(request.texts.send_model_first)
    return current


async def show_help(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Explain what the bot does, with an example."""
    if update.effective_message:
        await update.effective_message.reply_text(user_texts(update).help)


def _current_model(bot_services: BotServices, user_id: int) -> tuple[int, str, dict[str, Any]] | None:
    """The user's latest upload that is still kept: the chat's current model."""
    with bot_services.sessions() as session:
        model = session.scalar(
            select(UploadedModel)
            .where(UploadedModel.user_id == user_id, UploadedModel.deleted_at.is_(None))
            .order_by(UploadedModel.id.desc())
        )
        return None if model is None else (model.id, model.original_name, dict(model.summary))


async def list_nodes(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """List the current model's nodes, filtered by a part of their name or op, from the stored inspection."""
    request = await _request(update, context)
    if request is None or (current := await _current_model_or_ask(request)) is None:
        return
    texts, message = request.texts, request.message
    _, name, summary = current
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


async def receive_document(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A model file; a caption that is a /convert command (`/convert tflite quant=float16`) then runs on it."""
    message = update.effective_message
    arguments = caption_command(message.caption if message else None, "convert")
    if await receive_model(update, context) and arguments is not None:
        await convert_with_arguments(update, context, arguments)


def caption_command(caption: str | None, command: str) -> list[str] | None:
    """The arguments of `/command ...` (or `/command@bot ...`) written as a caption; None if it is not one."""
    words = (caption or "").split()
    if not words or words[0].split("@", 1)[0].lower() != f"/{command}":
        return None
    return words[1:]


async def convert_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Convert the current model in one line."""
    await convert_with_arguments(update, context, list(context.args or []))


async def convert_with_arguments(update: Update, context: ContextTypes.DEFAULT_TYPE, arguments: list[str]) -> None:
    request = await _request(update, context)
    if request is None or (current := await _current_model_or_ask(request)) is None:
        return
    model_id, _, summary = current
    drafts = request.services.state.drafts
    draft = drafts.get(request.chat_id)
    if draft is None or draft.model_id != model_id:
        draft = new_draft(model_id, summary)
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


async def list_jobs(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """The user's recent jobs: id, model, targets, status keyword, age."""
    request = await _request(update, context)
    if request is None:
        return
    texts = request.texts
    rows = await asyncio.to_thread(_recent_jobs, request.services, request.user.id)
    if not rows:
        await request.message.reply_text(texts.jobs_none)
        return
    lines = [texts.jobs_title] + [texts.job_line.format(**row) for row in rows]
    await request.message.reply_text("\n".join(lines))


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit}"
    return f"{int(seconds)} s"


def _status_keyword(job: Job) -> str:
    delivered = job.status in (JobStatus.SUCCEEDED.value, JobStatus.PARTIAL.value)
    if delivered and job.artifacts and all(a.deleted_at for a in job.artifacts):
        return "expired"
    return job.status


def _recent_jobs(bot_services: BotServices, user_id: int) -> list[dict[str, Any]]:
    with bot_services.sessions() as session:
        jobs = session.scalars(select(Job).where(Job.user_id == user_id).order_by(Job.id.desc()).limit(10))
        now = utcnow()
        return [
            {
                "job_id": job.id,
                "model": job.model.original_name,
                "targets": ",".join(job.targets),
                "status": _status_keyword(job),
                "age": _age((now - job.created_at).total_seconds()),
            }
            for job in jobs
        ]


async def show_job(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """One job of the user's; its files again if they are still kept."""
    from bot.progress import send_results

    request = await _request(update, context)
    if request is None:
        return
    message, texts, bot_services = request.message, request.texts, request.services
    argument = " ".join(context.args or [])
    job_id = parse_job_id(argument)
    rows = await asyncio.to_thread(_recent_jobs_by_id, bot_services, request.user.id, job_id)
    if rows is None:
        await message.reply_text(texts.job_not_found.format(job=argument or "?"))
        return
    row, status = rows
    await message.reply_text(texts.job_line.format(**row))
    if status == "expired":
        await message.reply_text(texts.files_expired.format(job_id=job_id))
    elif status in (JobStatus.SUCCEEDED.value, JobStatus.PARTIAL.value) and job_id is not None:
        await send_results(context, bot_services, job_id, request.chat_id, texts, resend=True)


def _recent_jobs_by_id(
    bot_services: BotServices, user_id: int, job_id: int | None
) -> tuple[dict[str, Any], str] | None:
    if job_id is None:
        return None
    with bot_services.sessions() as session:
        job = session.get(Job, job_id)
        if job is None or job.user_id != user_id:
            return None  # another user's job is "not found", never shown
        status = _status_keyword(job)
        row = {
            "job_id": job.id,
            "model": job.model.original_name,
            "targets": ",".join(job.targets),
            "status": status,
            "age": _age((utcnow() - job.created_at).total_seconds()),
        }
        return row, status


async def cancel(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Cancel the user's running or queued job, or else the dialogue in progress."""
    request = await _request(update, context)
    if request is None:
        return
    message, texts, bot_services, user = request.message, request.texts, request.services, request.user
    job_id = await asyncio.to_thread(_active_job, bot_services, user.id)
    if job_id is not None and await asyncio.to_thread(bot_services.jobs.cancel, job_id, user.id):
        return  # the status message says "cancelled"
    draft = bot_services.state.drafts.get(request.chat_id)
    if draft is not None and (draft.awaiting_shape or draft.picker_key):
        draft.awaiting_shape, draft.picker_key = None, None
        await message.reply_text(texts.cancelled_dialogue)
        return
    await message.reply_text(texts.nothing_to_cancel)


def _active_job(bot_services: BotServices, user_id: int) -> int | None:
    with bot_services.sessions() as session:
        return session.scalar(
            select(Job.id)
            .where(Job.user_id == user_id, Job.status.in_(["running", "queued", "interrupted"]))
            .order_by(Job.status == "running", Job.id.desc())
        )


async def _admin_request(
    update: Update, context: ContextTypes.DEFAULT_TYPE
) -> tuple[Message, Texts, BotServices] | None:
    """The message, texts and services of an admin's command; anyone else is told it is for admins."""
    message = update.effective_message
    if message is None:
        return None
    texts, bot_services = user_texts(update), services(context)
    user = update.effective_user
    if user is None or user.id not in bot_services.settings.admin_ids:
        await message.reply_text(texts.not_admin)
        return None
    return message, texts, bot_services


async def show_stats(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Admins: users, jobs by status, disk used."""
    if (admin := await _admin_request(update, context)) is None:
        return
    message, texts, bot_services = admin
    users, by_status = await asyncio.to_thread(_counts, bot_services)
    disk = shutil.disk_usage(bot_services.settings.data_dir)
    used = await asyncio.to_thread(tree_size, bot_services.settings.data_dir)
    jobs = ", ".join(f"{status} {count}" for status, count in sorted(by_status.items())) or "0"
    await message.reply_text(
        texts.stats.format(users=users, jobs=jobs, disk=f"{format_size(used)} (free {format_size(disk.free)})")
    )


def _counts(bot_services: BotServices) -> tuple[int, dict[str, int]]:
    with bot_services.sessions() as session:
        users = session.scalar(select(func.count()).select_from(User)) or 0
        rows = session.execute(select(Job.status, func.count()).group_by(Job.status)).all()
        return int(users), {status: int(count) for status, count in rows}


async def run_cleanup_now(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Admins: run the cleanup now and report what it removed."""
    if (admin := await _admin_request(update, context)) is None:
        return
    message, texts, bot_services = admin

    def work() -> str:
        from jobs.cleanup import run_cleanup

        with bot_services.sessions() as session:
            report = run_cleanup(session, bot_services.settings)
            session.commit()
            return report.summary()

    await message.reply_text(texts.cleanup_done.format(summary=await asyncio.to_thread(work)))

"""Builds the Telegram application: settings, services, handlers, error handling. `run_bot`
starts it with long polling. TensorFlow never runs in this process: conversions go to the job
service's worker processes and inspection to a separate process."""

from __future__ import annotations

import logging
from typing import Any

from telegram import BotCommand, Update
from telegram.ext import (
    AIORateLimiter,
    Application,
    ApplicationBuilder,
    ApplicationHandlerStop,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    TypeHandler,
    filters,
)

from bot import commands, dialogue, uploads
from bot.chat_order import PerChatUpdateProcessor
from bot.progress import ProgressReporter
from bot.services import BotContext, BotServices
from bot.settings import BotSettings
from bot.texts import texts_for
from jobs.service import JobService

log = logging.getLogger(__name__)

COMMANDS = [
    ("start", "what this bot does"),
    ("help", "how to use it, with an example"),
    ("nodes", "list the current model's nodes"),
    ("convert", "convert the current model"),
    ("jobs", "your recent jobs"),
    ("job", "one job and its files"),
    ("cancel", "cancel your newest job, job N, or the dialogue"),
]


async def check_allowed(update: Update, context: BotContext) -> None:
    """Before any handler: users outside CONVBOT_ALLOWED_USERS get one polite refusal, nothing more."""
    allowed = context.services.settings.allowed_user_ids
    user = update.effective_user
    if not allowed or (user is not None and user.id in allowed):
        return
    if update.callback_query is not None:
        await update.callback_query.answer()
    if update.effective_message is not None and user is not None:
        await update.effective_message.reply_text(texts_for(user.language_code).not_allowed.format(user_id=user.id))
    raise ApplicationHandlerStop


async def report_error(update: object, context: BotContext) -> None:
    """Log the traceback first, then tell the user something short."""
    log.error("error while handling an update", exc_info=context.error)
    if isinstance(update, Update) and update.effective_chat is not None:
        user = update.effective_user
        texts = texts_for(user.language_code if user else None)
        try:
            await context.bot.send_message(update.effective_chat.id, texts.error)
        except Exception:  # the error may be Telegram itself being unreachable
            log.exception("could not tell the user about the error")


def build_application(settings: BotSettings) -> Application[Any, Any, Any, Any, Any, Any]:
    builder = (
        ApplicationBuilder()
        .token(settings.token)
        .context_types(ContextTypes(context=BotContext))
        .base_url(f"{settings.api_url}/bot")
        .base_file_url(f"{settings.api_url}/file/bot")
        .local_mode(settings.local_api)
        # Waits out flood limits (RetryAfter) on every Bot API call, not only uploads.
        .rate_limiter(AIORateLimiter(max_retries=5))
        # Chats at once (up to 256 updates), each chat's updates in order: a command sent while its
        # upload is being read runs on that upload.
        .concurrent_updates(PerChatUpdateProcessor(256))
        .post_init(_start_services)
        .post_shutdown(_stop_services)
    )
    application = builder.build()
    application.bot_data["settings"] = settings
    # Group -1 runs first: the allowlist stops everything else for strangers.
    application.add_handler(TypeHandler(Update, check_allowed), group=-1)
    application.add_handler(CommandHandler(["start", "help"], commands.show_help))
    application.add_handler(CommandHandler("nodes", commands.list_nodes))
    application.add_handler(CommandHandler("convert", commands.convert_command))
    application.add_handler(CommandHandler("jobs", commands.list_jobs))
    application.add_handler(CommandHandler("job", commands.show_job))
    application.add_handler(CommandHandler("cancel", commands.cancel))
    application.add_handler(CommandHandler("stats", commands.show_stats))
    application.add_handler(CommandHandler("cleanup", commands.run_cleanup_now))
    application.add_handler(MessageHandler(filters.Document.ALL, commands.receive_document))
    application.add_handler(CallbackQueryHandler(dialogue.press_job_button, pattern=dialogue.JOB_BUTTON_PATTERN))
    application.add_handler(CallbackQueryHandler(dialogue.press_menu_button))
    application.add_handler(MessageHandler(filters.TEXT & ~filters.COMMAND, dialogue.reply_text))
    application.add_handler(
        MessageHandler(~filters.TEXT & ~filters.COMMAND & ~filters.Document.ALL, uploads.refuse_media)
    )
    application.add_error_handler(report_error)
    return application


async def _start_services(application: Application[Any, Any, Any, Any, Any, Any]) -> None:
    """Wait for the database and migrate it, start the workers and the cleanup schedule."""
    settings: BotSettings = application.bot_data["settings"]
    bot_services = BotServices(settings, JobService.open(settings))
    application.bot_data["services"] = bot_services
    reporter = ProgressReporter(application, bot_services)
    bot_services.jobs.subscribe(reporter.on_event)
    bot_services.jobs.start()  # reports interrupted jobs at once: their users hear within seconds
    application.bot_data["cleanup"] = bot_services.jobs.schedule_cleanup()
    await application.bot.set_my_commands([BotCommand(name, text) for name, text in COMMANDS])


async def _stop_services(application: Application[Any, Any, Any, Any, Any, Any]) -> None:
    scheduler = application.bot_data.get("cleanup")
    if scheduler is not None:
        scheduler.shutdown(wait=False)
    bot_services: BotServices | None = application.bot_data.get("services")
    if bot_services is not None:
        bot_services.close()


def run_bot(settings: BotSettings) -> None:
    """Run the bot with long polling until interrupted."""
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # its request lines carry the token
    build_application(settings).run_polling(allowed_updates=Update.ALL_TYPES, drop_pending_updates=False)

"""Starting a conversion from a chat: the one-line /convert, the "Convert now" button, the daily
quota, and asking for unknown input dimensions."""

from __future__ import annotations

import asyncio
from typing import Any

from bot.int8_samples import ask_what_int8_needs, full_integer_refusal
from bot.progress import with_network_retries
from bot.services import BotContext
from bot.state import Draft
from bot.texts import Texts
from bot.views import cancel_keyboard, format_shape
from converter.errors import BadOptionsError, ConvbotError
from converter.options import (
    DEFAULT_MAX_CALIBRATION_MB,
    INPUT_RANGES,
    QUANT_SEARCHES,
    ConversionOptions,
    parse_shape,
    parse_targets,
    split_quantization,
)
from jobs.catalog import UserView


def parse_convert_args(args: list[str], draft: Draft) -> Draft:
    """Apply `/convert [tflite|tfjs|all] [in=a,b] [out=c,d] [shape=name:dims] [quant=...|auto|compare] [range=0,1]`
    to a draft."""
    for arg in args:
        key, sep, value = arg.partition("=")
        if not sep:
            parse_targets(arg)  # raises on a typo
            draft.targets = arg.lower()
        elif key == "in":
            draft.inputs = [v for v in value.split(",") if v]
        elif key == "out":
            draft.outputs = [v for v in value.split(",") if v]
        elif key == "shape":
            name, dims = parse_shape(value)
            draft.shapes[name] = list(dims)
        elif key == "quant" and value.lower() in QUANT_SEARCHES:  # every variant: the smallest passing, or all
            draft.quant = value.lower()
        elif key == "quant":
            split_quantization(value)  # raises on a typo
            draft.quant = value.lower()
        elif key == "range":  # how image pixels map to a float input, for int8 samples that are images
            if value not in INPUT_RANGES:
                raise BadOptionsError(f"range= is one of {', '.join(INPUT_RANGES)} (got '{value}')")
            draft.input_range = value
        else:
            raise BadOptionsError(f"unknown option '{key}='; use in=, out=, shape=, quant= or range=")
    return draft


def draft_options(draft: Draft, max_calibration_mb: float = DEFAULT_MAX_CALIBRATION_MB) -> ConversionOptions:
    """The draft's options; the int8 samples as their storage key (the worker fetches them)."""
    tflite, tfjs, warnings = draft.quantizations()
    full_integer = tflite.is_full_integer and draft.samples is not None
    return ConversionOptions(
        targets=parse_targets(draft.targets),
        inputs=tuple(draft.inputs),
        outputs=tuple(draft.outputs),
        shapes=tuple((name, tuple(dims)) for name, dims in draft.shapes.items()),
        tflite_quantization=tflite,
        tfjs_quantization=tfjs,
        warnings=tuple(warnings),
        quant_search=draft.quant_search,
        calibration=draft.samples if full_integer else None,
        input_range=draft.input_range if full_integer else None,
        max_calibration_mb=max_calibration_mb,
    )


def missing_dimensions(summary: dict[str, Any], draft: Draft) -> tuple[str, Any] | None:
    """The first chosen input of a graph whose non-batch dimensions are unknown and not given."""
    if summary.get("signatures") or summary.get("layers"):
        return None  # SavedModel and Keras keep dynamic sizes
    shapes = {s["name"]: s.get("shape") for s in summary["suggested_inputs"]}
    shapes.update({n["name"]: n.get("shape") for n in summary.get("nodes", []) if n["name"] in draft.inputs})
    for name in draft.inputs:
        shape = shapes.get(name)
        if name in draft.shapes:
            continue
        if shape is None or any(d is None or d < 0 for d in shape[1:]):
            return name, shape
    return None


async def start_conversion(chat_id: int, user: UserView, draft: Draft, context: BotContext, texts: Texts) -> None:
    """Ask for missing dimensions, check the quota, then submit the job and show its status."""
    bot_services = context.services
    model = await asyncio.to_thread(bot_services.catalog.model, draft.model_id)
    if model is None:  # the draft's model is no longer recorded
        await context.bot.send_message(chat_id, texts.send_model_first)
        return
    missing = missing_dimensions(model.summary, draft)
    if missing is not None:  # an unknown batch alone becomes 1 in the converter; anything else is asked
        name, shape = missing
        draft.awaiting_shape = name
        await context.bot.send_message(chat_id, texts.ask_shape.format(name=name, shape=format_shape(shape)))
        return
    used, reset = await asyncio.to_thread(bot_services.catalog.jobs_in_last_day, user.id)
    if used >= bot_services.settings.daily_jobs:
        await context.bot.send_message(
            chat_id,
            texts.quota_reached.format(limit=bot_services.settings.daily_jobs, when=reset.strftime("%Y-%m-%d %H:%M")),
        )
        return
    refusal = full_integer_refusal(draft, texts)
    if refusal is not None:
        await context.bot.send_message(chat_id, refusal)
        return
    if await ask_what_int8_needs(chat_id, draft, context, texts):
        return
    try:
        options = draft_options(draft, bot_services.settings.max_calibration_mb)
    except ConvbotError as error:  # options that cannot go together: said in one line, like a typo
        await context.bot.send_message(chat_id, error.message)
        return
    job_id = await asyncio.to_thread(bot_services.jobs.submit, user.id, model.id, options)
    draft.samples, draft.samples_need_range = None, False  # samples serve one conversion; the next int8 asks again
    view = await asyncio.to_thread(bot_services.jobs.status, job_id)
    if view is not None and view.status == "queued":
        text = texts.queued.format(job_id=job_id, position=view.position)
        sent = await with_network_retries(
            lambda: context.bot.send_message(chat_id, text, reply_markup=cancel_keyboard(texts, job_id))
        )
        bot_services.status_messages.setdefault(job_id, (chat_id, sent.message_id))

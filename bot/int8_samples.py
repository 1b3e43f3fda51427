"""What a full-integer (int8, int8-io) conversion needs from the chat before it can start: the user's own
samples to calibrate on, sent as the next document, and, for images going to a float input, how pixels map
to the input (never guessed)."""

from __future__ import annotations

from typing import Any

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from bot.services import BotContext
from bot.state import Draft
from bot.texts import Texts
from bot.views import spec_key
from converter.calibration import InputSlot
from converter.formats import Target
from converter.options import INPUT_RANGES, TFJS_TARGETS, parse_targets


def full_integer_refusal(draft: Draft, texts: Texts) -> str | None:
    """Why the draft's int8 cannot be made, asked before any samples are: TF.js has no integer kernels."""
    _, tfjs, _ = draft.quantizations()
    if tfjs.is_full_integer and any(target in TFJS_TARGETS for target in parse_targets(draft.targets)):
        return texts.int8_tflite_only.format(quant=tfjs.value)
    return None


def needs_samples(draft: Draft) -> bool:
    """A full-integer .tflite is asked for and no samples are stored for it yet."""
    tflite, _, _ = draft.quantizations()
    return tflite.is_full_integer and Target.TFLITE in parse_targets(draft.targets) and draft.samples is None


async def ask_what_int8_needs(chat_id: int, draft: Draft, context: BotContext, texts: Texts) -> bool:
    """Ask for the samples, or for the input range of image samples; True when a question was asked (the
    conversion starts once it is answered)."""
    if needs_samples(draft):
        draft.awaiting_samples = True
        limit = f"{context.services.settings.max_calibration_mb:g} MB"
        tflite, _, _ = draft.quantizations()
        await context.bot.send_message(chat_id, texts.ask_samples.format(quant=tflite.value, limit=limit))
        return True
    if draft.samples is not None and draft.samples_need_range and draft.input_range is None:
        key = context.services.state.open_menu(chat_id, "range", model_id=draft.model_id)
        await context.bot.send_message(chat_id, texts.ask_input_range, reply_markup=input_range_keyboard(key))
        return True
    return False


def input_range_keyboard(key: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        [[InlineKeyboardButton(value, callback_data=f"{key}:setrange:{value}") for value in INPUT_RANGES]]
    )


def input_slots(summary: dict[str, Any], draft: Draft) -> list[InputSlot] | None:
    """The chosen inputs as the samples must fit them (batch 1 where open, -1 for sizes the converter settles),
    or None when the inspection does not tell an input's dtype: the job's converter then checks alone."""
    suggested = [spec_key(spec) for spec in summary["suggested_inputs"] if not spec.get("optional")]
    specs = {spec_key(spec): spec for spec in summary["suggested_inputs"]}
    specs.update({node["name"]: node for node in summary.get("nodes", []) if node["name"] not in specs})
    slots = []
    for name in draft.inputs or suggested:
        spec = specs.get(name)
        shape = draft.shapes.get(name, spec.get("shape") if spec else None)
        if spec is None or spec.get("dtype") in (None, "", "unknown") or shape is None:
            return None
        dims = [-1 if d is None or d < 0 else int(d) for d in shape]
        if dims and dims[0] < 0:
            dims[0] = 1
        slots.append(InputSlot(name, str(spec["dtype"]), tuple(dims)))
    return slots

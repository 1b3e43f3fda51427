"""Buttons and replies while a user sets up a conversion: pick nodes, targets and quantization,
search nodes by typing, answer a question about input dimensions."""

from __future__ import annotations

import asyncio
from typing import Any

from telegram import Update

from bot.conversions import start_conversion
from bot.services import BotContext
from bot.state import Draft
from bot.texts import Texts
from bot.uploads import record_user, user_texts
from bot.views import choice_keyboard, nodes_page, picker_candidates, picker_view, summary_keyboard
from converter.errors import BadOptionsError
from converter.formats import ModelFormat
from converter.options import INPUT_RANGES, parse_shape, parse_targets

TARGETS = ("all", "tflite", "tfjs", "pb", "savedmodel")
# auto: the smallest file that passes; int8 and int8-io ask for samples first
QUANTIZATIONS = ("none", "float16", "dynamic", "uint8", "uint16", "int8", "int8-io", "auto")
DEFAULT_TARGETS = ["tflite", "tfjs"]  # what "all" stands for


def toggle_target(current: str, target: str) -> str:
    """Tick or untick one target of the draft's 'tflite,pb' (or 'all'); the last one stays ticked."""
    if target == "all":
        return "all"
    chosen = [t.value for t in parse_targets(current)]
    if target not in chosen:
        chosen.append(target)
    elif len(chosen) > 1:
        chosen.remove(target)
    return "all" if sorted(chosen) == sorted(DEFAULT_TARGETS) else ",".join(chosen)


def targets_for(summary: dict[str, Any]) -> tuple[str, ...]:
    """The target buttons for the model: a TF.js layers model too for Keras 2 files (TF.js cannot
    load what tensorflowjs makes from Keras 3 files)."""
    keras_version = str(summary.get("details", {}).get("keras_version", ""))
    if ModelFormat(summary["format"]).is_keras and keras_version.startswith("2"):
        return (*TARGETS, "tfjs-layers")
    return TARGETS


async def _summary_of(context: BotContext, model_id: int) -> dict[str, Any]:
    model = await asyncio.to_thread(context.services.catalog.model, model_id)
    assert model is not None, f"a draft's model {model_id} is always recorded"
    return model.summary


async def press_menu_button(update: Update, context: BotContext) -> None:
    """A button of a menu (`<menu key>:<action>[:<argument>]`): answer at once, then act on the menu."""
    query = update.callback_query
    if query is None or query.data is None or update.effective_chat is None:
        return
    await query.answer()
    texts, chat_id = user_texts(update), update.effective_chat.id
    key, _, rest = query.data.partition(":")
    action, _, argument = rest.partition(":")
    bot_services = context.services
    menu = bot_services.state.menu(key, chat_id)
    draft = bot_services.state.drafts.get(chat_id)
    # A menu of an earlier model (the chat has uploaded another since) is as good as expired.
    stale = draft is not None and menu is not None and menu.data.get("model_id", draft.model_id) != draft.model_id
    if menu is None or stale or (menu.kind != "nodes" and draft is None):
        await query.edit_message_reply_markup(None)
        await context.bot.send_message(chat_id, texts.menu_expired)
        return
    if menu.kind == "nodes":
        text, keyboard = nodes_page(
            texts, key, menu.data["name"], menu.data["nodes"], menu.data["filter"], int(argument)
        )
        await query.edit_message_text(text, reply_markup=keyboard)
        return
    assert draft is not None
    summary = await _summary_of(context, draft.model_id)
    if action == "go":
        await query.edit_message_reply_markup(None)
        user = await record_user(bot_services, update)
        await start_conversion(chat_id, user, draft, context, texts)
    elif action == "pick":
        draft.search = ""
        await _show_picker(query, bot_services.state, chat_id, texts, summary, draft, argument, 0)
    elif action in ("x", "page"):
        which = menu.data["which"]
        names = menu.data["names"]
        page = menu.data["page"]
        if action == "x":
            chosen = getattr(draft, which)
            name_ = names[int(argument)]
            if name_ in chosen:
                chosen.remove(name_)
            else:
                chosen.append(name_)
        else:
            page = int(argument)
        menu.data["page"] = page
        text, keyboard = picker_view(texts, key, which, names, getattr(draft, which), page)
        await query.edit_message_text(text, reply_markup=keyboard)
    elif action in ("done", "back"):
        draft.picker_key = None
        summary_key = bot_services.state.open_menu(chat_id, "summary", model_id=draft.model_id)
        await query.edit_message_reply_markup(summary_keyboard(texts, summary_key, draft))
    elif action == "targets" or (action == "settarget" and argument in targets_for(summary)):
        if action == "settarget":  # targets are ticked and unticked; Back returns to the summary
            draft.targets = toggle_target(draft.targets, argument)
        ticked = ["all"] if draft.targets == "all" else []
        ticked += [target.value for target in parse_targets(draft.targets)]
        await query.edit_message_reply_markup(choice_keyboard(texts, key, "settarget", targets_for(summary), ticked))
    elif action == "quant":
        await query.edit_message_reply_markup(choice_keyboard(texts, key, "setquant", QUANTIZATIONS, [draft.quant]))
    elif action == "setrange" and argument in INPUT_RANGES:  # how image samples map to a float input
        draft.input_range = argument
        await query.edit_message_reply_markup(None)
        await start_conversion(chat_id, await record_user(bot_services, update), draft, context, texts)
    elif action == "setquant" and argument in QUANTIZATIONS:
        draft.quant = argument
        await query.edit_message_reply_markup(summary_keyboard(texts, key, draft))


async def _show_picker(
    query: Any, state: Any, chat_id: int, texts: Texts, summary: dict[str, Any], draft: Draft, which: str, page: int
) -> None:
    names = picker_candidates(summary, which, draft.search)
    key = state.open_menu(chat_id, "picker", which=which, names=names, page=page, model_id=draft.model_id)
    draft.picker_key = key
    text, keyboard = picker_view(texts, key, which, names, getattr(draft, which), page)
    await query.edit_message_text(text, reply_markup=keyboard)


JOB_BUTTON_PATTERN = r"^job:"  # a job's own buttons (`job:cancel:12`); menu keys never hold a colon


async def press_job_button(update: Update, context: BotContext) -> None:
    """The Cancel button under a job's status message."""
    query = update.callback_query
    if query is None or query.data is None:
        return
    await query.answer()
    _, action, argument = [*query.data.split(":"), "", ""][:3]
    if action == "cancel" and argument.isdigit():
        user = await record_user(context.services, update)
        cancelled = await asyncio.to_thread(context.services.jobs.cancel, int(argument), user.id)
        if not cancelled and update.effective_chat is not None:
            await context.bot.send_message(update.effective_chat.id, user_texts(update).nothing_to_cancel)


async def reply_text(update: Update, context: BotContext) -> None:
    """Plain text: a shape the bot asked for, a search in the open node picker, or a nudge."""
    message, chat = update.effective_message, update.effective_chat
    if message is None or message.text is None or chat is None:
        return
    texts, bot_services = user_texts(update), context.services
    draft = bot_services.state.drafts.get(chat.id)
    if draft is not None and draft.awaiting_shape:
        try:
            _, dims = parse_shape(f"{draft.awaiting_shape}:{message.text.strip()}")
        except BadOptionsError:
            await message.reply_text(texts.bad_shape)
            return
        draft.shapes[draft.awaiting_shape] = list(dims)
        draft.awaiting_shape = None
        user = await record_user(bot_services, update)
        await start_conversion(chat.id, user, draft, context, texts)
        return
    if draft is not None and draft.picker_key and bot_services.state.menu(draft.picker_key, chat.id):
        menu = bot_services.state.menu(draft.picker_key, chat.id)
        assert menu is not None
        summary = await _summary_of(context, draft.model_id)
        draft.search = message.text.strip()
        which = menu.data["which"]
        names = picker_candidates(summary, which, draft.search)
        key = bot_services.state.open_menu(chat.id, "picker", which=which, names=names, page=0, model_id=draft.model_id)
        draft.picker_key = key
        text, keyboard = picker_view(texts, key, which, names, getattr(draft, which), 0)
        await message.reply_text(text, reply_markup=keyboard)
        return
    await message.reply_text(texts.text_outside_dialogue)

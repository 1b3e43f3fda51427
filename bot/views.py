"""What the bot shows: message texts and inline keyboards, built from stored data. Buttons carry
`<menu key>:<action>[:<argument>]`, always under Telegram's 64-byte limit."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from bot.state import Draft
from bot.texts import Texts
from converter.units import format_size
from jobs.catalog import JobLine

PAGE_SIZE = 8
CAPTION_LIMIT = 1024  # Telegram's, for a document's or a photo's caption
MAX_LISTED = 12  # suggestions shown in a summary before "… and N more"


def format_shape(shape: Sequence[int | None] | None) -> str:
    if shape is None:
        return "?"
    return "[" + ",".join("?" if d is None or d < 0 else str(d) for d in shape) + "]"


def spec_key(spec: dict[str, Any]) -> str:
    return str(spec.get("key") or spec["name"])


def _spec_line(spec: dict[str, Any]) -> str:
    optional = " (optional)" if spec.get("optional") else ""
    return f"• {spec_key(spec)} {spec.get('dtype', '')} {format_shape(spec.get('shape'))}{optional}".rstrip()


def _listing(specs: list[dict[str, Any]]) -> list[str]:
    lines = [_spec_line(spec) for spec in specs[:MAX_LISTED]]
    if len(specs) > MAX_LISTED:
        lines.append(f"… +{len(specs) - MAX_LISTED}")
    return lines


def summary_text(texts: Texts, name: str, summary: dict[str, Any]) -> str:
    """Format, size, node count, main ops, suggestions and readiness."""
    ops = ", ".join(f"{op} {count}" for op, count in list(summary["op_histogram"].items())[:8])
    unit = "layers" if summary.get("layers") else "nodes"
    lines = [
        texts.summary_title.format(
            name=name,
            format=summary["format"],
            size=format_size(summary["file_size"]),
            count=summary["node_count"],
            unit=unit,
            ops=ops,
        ),
        "",
        texts.suggested_inputs,
        *_listing(summary["suggested_inputs"]),
        texts.suggested_outputs,
        *_listing(summary["suggested_outputs"]),
        "",
        readiness_text(texts, summary.get("readiness")),
    ]
    lines += [f"⚠ {warning}" for warning in summary.get("warnings", [])]
    return "\n".join(lines)


def readiness_text(texts: Texts, readiness: dict[str, Any] | None) -> str:
    if readiness is None:
        return texts.readiness.format(tflite=texts.ready_later, tfjs=texts.ready_later)

    def ops(findings: list[dict[str, Any]]) -> str:
        return ", ".join(f["op"] for f in findings[:5])

    if readiness["tflite_unsupported"]:
        tflite = texts.ready_unsupported.format(ops=ops(readiness["tflite_unsupported"]))
    elif readiness["tflite_needs_select_ops"]:
        tflite = texts.ready_flex.format(ops=ops(readiness["tflite_needs_select_ops"]))
    else:
        tflite = texts.ready_ok
    tfjs = (
        texts.ready_ok
        if readiness["tfjs_ok"]
        else texts.ready_unsupported.format(ops=ops(readiness["tfjs_unsupported"]))
    )
    return texts.readiness.format(tflite=tflite, tfjs=tfjs)


def summary_keyboard(texts: Texts, key: str, draft: Draft) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        [
            [InlineKeyboardButton(texts.button_convert, callback_data=f"{key}:go")],
            [
                InlineKeyboardButton(texts.button_inputs, callback_data=f"{key}:pick:inputs"),
                InlineKeyboardButton(texts.button_outputs, callback_data=f"{key}:pick:outputs"),
            ],
            [
                InlineKeyboardButton(texts.button_targets.format(value=draft.targets), callback_data=f"{key}:targets"),
                InlineKeyboardButton(texts.button_quant.format(value=draft.quant), callback_data=f"{key}:quant"),
            ],
        ]
    )


def picker_candidates(summary: dict[str, Any], which: str, search: str = "") -> list[str]:
    """Names to choose from: the suggestions first, then every other node (graphs only)."""
    suggested = [spec_key(s) for s in summary[f"suggested_{which}"]]
    if summary.get("signatures") or summary.get("layers"):
        names = suggested  # SavedModel and Keras: signature keys only
    else:
        others = [node["name"] for node in summary.get("nodes", []) if node["op"] != "Const"]
        names = list(dict.fromkeys(suggested + others))
    if search:
        needle = search.lower()
        names = [name for name in names if needle in name.lower()]
    return names


def picker_view(
    texts: Texts, key: str, which: str, names: list[str], chosen: Sequence[str], page: int
) -> tuple[str, InlineKeyboardMarkup]:
    pages = max(1, -(-len(names) // PAGE_SIZE))
    page = min(max(page, 0), pages - 1)
    rows = []
    for index in range(page * PAGE_SIZE, min(len(names), (page + 1) * PAGE_SIZE)):
        name = names[index]
        tick = "✅ " if name in chosen else ""
        rows.append([InlineKeyboardButton(f"{tick}{_short(name)}", callback_data=f"{key}:x:{index}")])
    navigation = []
    if page > 0:
        navigation.append(InlineKeyboardButton("◀", callback_data=f"{key}:page:{page - 1}"))
    if page < pages - 1:
        navigation.append(InlineKeyboardButton("▶", callback_data=f"{key}:page:{page + 1}"))
    if navigation:
        rows.append(navigation)
    rows.append(
        [
            InlineKeyboardButton(texts.button_back, callback_data=f"{key}:back"),
            InlineKeyboardButton(texts.button_done, callback_data=f"{key}:done"),
        ]
    )
    template = texts.choose_inputs if which == "inputs" else texts.choose_outputs
    return template.format(count=len(chosen), page=page + 1, pages=pages), InlineKeyboardMarkup(rows)


def _short(name: str, limit: int = 60) -> str:
    return name if len(name) <= limit else "…" + name[-(limit - 1) :]


def choice_keyboard(
    texts: Texts, key: str, action: str, values: Sequence[str], ticked: Collection[str]
) -> InlineKeyboardMarkup:
    rows = [
        [InlineKeyboardButton(("✅ " if v in ticked else "") + v, callback_data=f"{key}:{action}:{v}")] for v in values
    ]
    rows.append([InlineKeyboardButton(texts.button_back, callback_data=f"{key}:back")])
    return InlineKeyboardMarkup(rows)


def nodes_page(
    texts: Texts, key: str, name: str, nodes: list[dict[str, Any]], text: str, page: int
) -> tuple[str, InlineKeyboardMarkup | None]:
    pages = max(1, -(-len(nodes) // 20))
    page = min(max(page, 0), pages - 1)
    shown = nodes[page * 20 : (page + 1) * 20]
    title = texts.nodes_title.format(
        name=name, filter=f" “{text}”" if text else "", count=len(nodes), page=page + 1, pages=pages
    )
    lines = [title] + [f"{n['name']}  {n['op']}  {format_shape(n.get('shape'))}" for n in shown]
    buttons = []
    if page > 0:
        buttons.append(InlineKeyboardButton("◀", callback_data=f"{key}:npage:{page - 1}"))
    if page < pages - 1:
        buttons.append(InlineKeyboardButton("▶", callback_data=f"{key}:npage:{page + 1}"))
    return "\n".join(lines), InlineKeyboardMarkup([buttons]) if buttons else None


def job_line(texts: Texts, job: JobLine) -> str:
    """`#12 posenet.pb → tflite,tfjs: succeeded, 3 min ago`"""
    age = _age(job.age_seconds())
    return texts.job_line.format(
        job_id=job.job_id, model=job.model, targets=",".join(job.targets), status=job.status, age=age
    )


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit}"
    return f"{int(seconds)} s"


def cancel_keyboard(texts: Texts, job_id: int) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup([[InlineKeyboardButton(texts.button_cancel, callback_data=f"job:cancel:{job_id}")]])


def validation_line(check: dict[str, Any]) -> str:
    if not check.get("outputs"):
        return f"{check['status']} ({check['message']})"
    worst = max(check["outputs"], key=lambda o: o["max_rel_error"])
    line = f"{check['status']}, max error {worst['max_abs_error']:.1e} ({worst['max_rel_error']:.1e} of scale)"
    # A pass with words: rows chosen among tied scores, or a runtime's kernel named (converter/verify.py).
    words = check["message"].removeprefix("passed: ") if check["message"].startswith("passed: ") else ""
    return f"{line}; {words}" if words else line


def caption_text(texts: Texts, check: dict[str, Any] | None, name: str, size: str, quant: str) -> str:
    """A file's caption; one that computes something else than the model begins with that verdict in words."""
    caption = texts.caption.format(
        name=name, size=size, quant=quant, check=validation_line(check) if check else "not run"
    )
    if check is not None and check.get("agreement"):  # int8 calibrated on images in class folders
        agreement = check["agreement"]
        percent = 100.0 * agreement["agreeing"] / agreement["images"] if agreement["images"] else 0.0
        caption += texts.agreement.format(percent=percent, images=agreement["images"])
    if check is None or check["status"] != "failed":
        return caption
    return mismatch_text(texts, check) + caption


def chart_caption(texts: Texts, quant_search: dict[str, Any]) -> str:
    """quant=auto|compare's chart: per target why its file won (the converter's words, English), each reason cut
    at a clause to a fair share of the caption limit, so that every target's winner is named."""
    reasons = [str(choice["reason"]) for choice in quant_search.get("choices", [])]
    head = texts.quant_chart.format(reasons="")
    share = (CAPTION_LIMIT - len(head)) // max(len(reasons), 1) - 1  # - 1: the line break
    return texts.quant_chart.format(reasons="\n".join(_cut_at_clause(reason, share) for reason in reasons))


def _cut_at_clause(text: str, limit: int) -> str:
    """'tfjs: uint16 (150 KB): the smallest that passes; uint8 ...; float16 ...' cut after whole clauses."""
    if len(text) <= limit:
        return text
    clauses = text.split("; ")
    kept = clauses[0]
    for clause in clauses[1:]:
        if len(kept) + len(clause) + len("; ; …") > limit:
            break
        kept += "; " + clause
    cut = kept + "; …"
    return cut if len(cut) <= limit else text[: limit - 1] + "…"


# What else to try when a quantized file fails its check, per target (auto: the smallest that passes).
OTHER_QUANTIZATIONS = {"tflite": ("float16", "dynamic", "auto"), "tfjs": ("float16", "uint16", "auto")}


def _others(check: dict[str, Any]) -> str:
    """'float16|dynamic|auto' for a failed TFLite int8: this target's quantizations, not the one that failed."""
    others = OTHER_QUANTIZATIONS.get(check["target"], ("float16", "auto"))
    return "|".join(quant for quant in others if quant != check["quantization"])


def mismatch_text(texts: Texts, check: dict[str, Any]) -> str:
    worst = max(check["outputs"], key=lambda o: o["max_rel_error"])
    quant = check["quantization"]
    if quant == "none":
        advice = texts.advice_float32
    else:
        advice = texts.advice_quantized.format(quant=quant, others=_others(check))
    culprit = texts.culprit.format(culprit=check["culprit"]) if check.get("culprit") else ""
    return texts.caption_mismatch.format(
        percent=_percent(worst["max_rel_error"]), allowed=_percent(check["tolerance"]), advice=advice, culprit=culprit
    )


def _percent(fraction: float) -> str:
    return f"{fraction * 100:.2g} %"


def withheld_lines(texts: Texts, result: dict[str, Any]) -> list[str]:
    """The files not sent because they failed to load or run, and why."""
    return [
        texts.withheld.format(target=check["target"], reason=check["message"])
        for check in result.get("validation", [])
        if check["status"] == "error"
    ]


def graph_check_line(texts: Texts, graph_check: list[dict[str, Any]]) -> str:
    """For a TF.js model: is the graph convbot rebuilt from it faithful (apart from each file's runtime)?"""
    if not graph_check:
        return ""
    worst = max(graph_check, key=lambda o: o["max_rel_error"])
    text = texts.graph_faithful if all(o["passed"] for o in graph_check) else texts.graph_unfaithful
    return text.format(error=f"{worst['max_rel_error']:.1e}", output=worst["name"]) + "\n"


def failed_check_lines(texts: Texts, result: dict[str, Any]) -> list[str]:
    """For each file outside its tolerance: the verdict in words and what to try, then where it departs."""
    lines = []
    for check in result.get("validation", []):
        if check["status"] == "failed" and check.get("outputs"):
            name = f"{check['target']} {check['quantization']}"
            lines.append(f"{name}: {mismatch_text(texts, check).strip().removeprefix('⚠ ')}")
            if check.get("advice"):  # the converter's own words (English), with its figures
                lines.append(f"{name}: {check['advice']}")
    return lines


def report_text(texts: Texts, job_id: int, result: dict[str, Any]) -> str:
    timings = ", ".join(f"{k} {v:.1f} s" for k, v in result.get("timings", {}).items())
    warnings = "".join(f"⚠ {w}\n" for w in [*withheld_lines(texts, result), *result.get("warnings", [])])
    warnings += graph_check_line(texts, result.get("graph_check") or [])
    warnings += "".join(f"⚠ {line}\n" for line in failed_check_lines(texts, result))
    manifest_lines = []
    for check in result.get("validation", []):
        target = check["target"]
        inputs = ", ".join(
            f"{e['key']}→{e['name']}" + (f" (#{e['index']})" if e.get("index") is not None else "")
            for e in check.get("inputs_manifest", [])
        )
        outputs = ", ".join(
            f"{e['key']}→{e['name']}" + (f" (#{e['index']})" if e.get("index") is not None else "")
            for e in check.get("outputs_manifest", [])
        )
        if inputs or outputs:
            manifest_lines.append(f"{target}: in {inputs}; out {outputs}")
    manifest = "\n".join(dict.fromkeys(manifest_lines))  # quant=compare: every variant of a target has the same
    return texts.report.format(job_id=job_id, timings=timings, warnings=warnings, manifest=manifest)

"""Plain-text tables of inspection summaries and conversion results, for the terminal."""

from __future__ import annotations

from collections.abc import Sequence

from converter.op_support import OpFinding
from converter.quant_choice import QuantChoice
from converter.result import ERROR, FAILED, ConversionResult, TensorEntry, TopOneAgreement
from converter.summary import ModelSummary, Shape, TensorSpec
from converter.units import format_size

MAX_NODES_SHOWN = 40


def format_shape(shape: Shape) -> str:
    if shape is None:
        return "?"
    return "[" + ",".join("?" if d is None or d < 0 else str(d) for d in shape) + "]"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(c)) for c in column) for column in zip(headers, *rows, strict=False)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines.extend("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows)
    return "\n".join(lines)


def _spec_rows(specs: Sequence[TensorSpec]) -> list[list[str]]:
    return [
        [
            spec.key or spec.name,
            spec.name if spec.key and spec.key != spec.name else "",
            spec.dtype,
            format_shape(spec.shape),
            "optional" if spec.optional else "",
        ]
        for spec in specs
    ]


def _notes(title: str, notes: Sequence[OpFinding]) -> list[str]:
    return [f"  {title}:"] + [f"    {n.op} (x{n.count}): {n.note}" for n in notes] if notes else []


def render_summary(summary: ModelSummary, all_nodes: bool = False) -> str:
    """The summary a person reads before choosing inputs and outputs."""
    ops = ", ".join(f"{op} {count}" for op, count in list(summary.op_histogram.items())[:12])
    lines = [
        f"model:   {summary.path}",
        f"format:  {summary.format.value}   size: {format_size(summary.file_size)}   "
        f"{'layers' if summary.layers else 'nodes'}: {summary.node_count}",
        f"ops:     {ops}",
        *([f"details: {', '.join(f'{k} {v}' for k, v in summary.details.items())}"] if summary.details else []),
        "",
        "suggested inputs:",
        table(["name", "tensor", "dtype", "shape", ""], _spec_rows(summary.suggested_inputs)),
        "",
        "suggested outputs:",
        table(["name", "tensor", "dtype", "shape", ""], _spec_rows(summary.suggested_outputs)),
        "",
    ]
    for signature in summary.signatures:
        lines.append(f"signature '{signature.key}':")
        lines.append(
            table(
                ["direction", "key", "tensor", "dtype", "shape"],
                [
                    [direction, s.key or "", s.name, s.dtype, format_shape(s.shape)]
                    for direction, specs in (("input", signature.inputs), ("output", signature.outputs))
                    for s in specs
                ],
            )
        )
        lines.append("")
    readiness = summary.readiness
    lines.append("readiness:")
    if readiness is None:
        lines.append("  checked when converting (a Keras model's ops are known once it is loaded)")
    else:
        tflite = (
            "ok"
            if readiness.tflite_builtin_ok
            else ("needs Select TF ops (Flex delegate)" if not readiness.tflite_unsupported else "has unsupported ops")
        )
        lines.append(f"  TFLite: {tflite}")
        lines += _notes("needs Select TF ops", readiness.tflite_needs_select_ops)
        lines += _notes("not convertible", readiness.tflite_unsupported)
        lines.append(f"  TF.js:  {'ok' if readiness.tfjs_ok else 'has unsupported ops'}")
        lines += _notes("not supported", readiness.tfjs_unsupported)
        lines += _notes("runs only with executeAsync()", readiness.tfjs_needs_execute_async)
    for warning in summary.warnings:
        lines.append(f"warning: {warning}")
    if summary.nodes:
        shown = summary.nodes if all_nodes else summary.nodes[:MAX_NODES_SHOWN]
        lines += ["", f"nodes ({len(summary.nodes)}):"]
        lines.append(
            table(
                ["name", "op", "dtype", "shape"],
                [[n.name, n.op, n.dtype or "", format_shape(n.shape) if n.shape is not None else ""] for n in shown],
            )
        )
        if len(shown) < len(summary.nodes):
            lines.append(f"... {len(summary.nodes) - len(shown)} more (--all-nodes to list them)")
    return "\n".join(lines)


def _error(value: float) -> str:
    return "inf" if value == float("inf") else f"{value:.2e}"


def render_validation(results: Sequence[ConversionResult]) -> str:
    """One row per artifact output: how far it is from the source model, and the verdict."""
    rows = []
    for result in results:
        sizes = {(a.target, a.quantization): a.size for a in result.artifacts}
        for check in result.validation:
            size = format_size(sizes.get((check.target, check.quantization), 0))
            head = [check.target.value, check.quantization.value, size]
            if not check.outputs:
                rows.append([*head, check.status, check.message, "", "", ""])
            for output in check.outputs:
                verdict = "passed" if output.passed else "FAILED"
                rows.append(
                    [
                        *head,
                        verdict,
                        output.name,
                        _error(output.max_abs_error),
                        _error(output.max_rel_error),
                        f"{check.tolerance:g}",
                    ]
                )
    if not rows:
        return "validation: not run (--no-verify)"
    title = "validation: the source model and each artifact on seeded random inputs and all ones"
    if any(c.quantization.is_calibrated for r in results for c in r.validation):
        title += "; int8 on a few of your samples instead"
    headers = ["target", "quant", "size", "status", "output", "max abs err", "rel to scale", "tolerance"]
    return "\n".join(
        [title, table(headers, rows), *_tie_notes(results), *_int8_notes(results), *_failure_notes(results)]
    )


def render_graph_check(result: ConversionResult) -> str:
    """Is the graph convbot rebuilt from a TF.js model faithful to it (apart from each artifact's runtime)?"""
    worst = max(result.graph_check, key=lambda check: check.max_rel_error)
    if all(check.passed for check in result.graph_check):
        return (
            "conversion: the graph convbot rebuilt, run in TensorFlow, matches your model run in TF.js: "
            f"up to {_error(worst.max_rel_error)} of scale ({worst.name})"
        )
    return (
        "conversion: FAILED: the graph convbot rebuilt, run in TensorFlow, departs from your model run in TF.js "
        f"by {_error(worst.max_rel_error)} of scale ({worst.name}); this is convbot's fault: please report it"
    )


def _tie_notes(results: Sequence[ConversionResult]) -> list[str]:
    """A passing verdict with words (rows chosen among tied scores), said below the table."""
    return [
        f"{c.target.value} {c.quantization.value}: {c.message}"
        for r in results
        for c in r.validation
        if c.outputs and c.message.startswith("passed:")
    ]


def _int8_notes(results: Sequence[ConversionResult]) -> list[str]:
    """A full-integer .tflite: its verdict with its error on the user's samples, and for a classifier calibrated
    on images in class folders how often it picks the float model's class."""
    lines = []
    for check in (c for r in results for c in r.validation if c.quantization.is_calibrated and c.outputs):
        lines.append(f"{check.target.value} {check.quantization.value}: {check.message}")
        if check.agreement is not None:
            lines.append(f"{check.target.value} {check.quantization.value}: {agreement_sentence(check.agreement)}")
    return lines


def agreement_sentence(agreement: TopOneAgreement) -> str:
    """'top-1 agrees on 97 % of your 120 images (the float model's class; least: sad, 90 % of 20)'."""
    sentence = f"top-1 agrees on {agreement.percent:.0f} % of your {agreement.images} images (quantized vs float"
    if not agreement.by_class:
        return sentence + ")"
    label, images, agreeing = min(agreement.by_class, key=lambda row: (row[2] / row[1] if row[1] else 1.0, row[0]))
    return sentence + f"; least: {label}, {100.0 * agreeing / images:.0f} % of {images})"


def _failure_notes(results: Sequence[ConversionResult]) -> list[str]:
    """Under the table, for each failed artifact: what it means and what to do, then where it departs."""
    lines = []
    for check in (check for result in results for check in result.validation):
        if check.advice:
            lines.append(f"{check.target.value} {check.quantization.value}: {check.advice}")
        if check.culprit:
            lines.append(f"  {check.culprit}")
    return lines


def render_manifest(result: ConversionResult) -> str:
    """The names and tensors a user needs to call each artifact."""
    blocks = []
    for check in result.validation:
        if not check.inputs_manifest and not check.outputs_manifest:
            continue
        if check.target.value == "tflite":
            # A file with layers in float (int8-mixed), beside the one asked for, has tensors of its own.
            of = f" of {check.quantization.value}" if check.float_layers else ""
            block = [f"TFLite I/O{of} (signature 'serving_default'; outputs may be stored in another order):"]
            for direction, entries in (("input", check.inputs_manifest), ("output", check.outputs_manifest)):
                block += [
                    f"  {direction:6} {e.key} -> tensor {e.index} '{e.name}' {e.dtype} {format_shape(e.shape)}"
                    + _quantization_note(e)
                    for e in entries
                ]
        else:
            inputs = ", ".join(e.key for e in check.inputs_manifest)
            outputs = ", ".join(e.key for e in check.outputs_manifest)
            engine = f" ({check.engine} backend)" if check.engine else ""
            block = [f"TF.js execute(){engine}: inputs {inputs}; outputs {outputs}"]
        blocks.append("\n".join(block))
    return "\n".join(dict.fromkeys(blocks))


def _quantization_note(entry: TensorEntry) -> str:
    """An int8 tensor: how its values map to real ones (real = scale * (int8 - zero point))."""
    return f" scale {entry.scale:.6g} zero point {entry.zero_point}" if entry.scale else ""


def render_result(result: ConversionResult) -> str:
    """What was written, how long it took and what to watch out for."""
    lines = [
        table(
            ["target", "quantization", "size", "path"],
            [[a.target.value, a.quantization.value, format_size(a.size), a.path] for a in result.artifacts]
            + [
                [c.target.value, c.quantization.value, "-", f"not kept: {c.message}"]
                for c in result.validation
                if c.status == ERROR
            ],
        )
    ]
    lines.append("")
    lines.append("inputs:  " + ", ".join(f"{s.key or s.name} {s.dtype} {format_shape(s.shape)}" for s in result.inputs))
    lines.append("outputs: " + ", ".join(s.key or s.name for s in result.outputs))
    lines.append("timings: " + ", ".join(f"{k} {v:.2f} s" for k, v in result.timings.items()))
    lines.append("tools:   " + ", ".join(f"{k} {v}" for k, v in result.versions.items()))
    lines += [f"warning: {w}" for w in result.warnings]
    lines += ["", render_validation([result])]
    if result.graph_check:
        lines += ["", render_graph_check(result)]
    manifest = render_manifest(result)
    if manifest:
        lines += ["", manifest]
    return "\n".join(lines)


def render_quant_choices(choices: Sequence[QuantChoice]) -> str:
    """`--quant auto`: every variant tried per target (smallest first), then why each kept file won."""
    rows = [
        [
            variant.target.value,
            variant.quantization.value,
            format_size(variant.size) if variant.path else "-",
            _error(variant.max_rel_error) if variant.max_rel_error is not None else "-",
            f"{variant.tolerance:g}",
            variant.status if variant.status != FAILED else "FAILED",
            "kept" if variant is choice.kept else "",
        ]
        for choice in choices
        for variant in choice.tried
    ]
    headers = ["target", "quant", "size", "max err of scale", "tolerance", "status", ""]
    lines = ["quantization auto: every variant converted and verified; the smallest that passes is kept", ""]
    lines += [table(headers, rows), ""]
    lines += [choice.reason for choice in choices]
    lines += [f"kept: {choice.kept.path}" for choice in choices if choice.kept is not None]
    return "\n".join(lines)

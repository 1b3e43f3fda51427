"""`convert_in_process`: one conversion from a model file to its artifacts, in this process.

This is the unit of work. `converter.convert` runs it in a child process; a warm worker pool
can call it directly in its workers.
"""

from __future__ import annotations

import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

from converter import formats as fmt
from converter.agreement import tflite_top1_agreement, worst_error_on_inputs
from converter.archive import ArchiveLimits
from converter.calibration import CalibrationSet, InputSlot, load_calibration
from converter.culprit import SourceGraph
from converter.detect import ModelSource, detect_model
from converter.errors import BadOptionsError, ConversionError
from converter.formats import ModelFormat, Quantization, Target
from converter.graph_inspect import read_graph_def
from converter.inspection import inspect_source
from converter.int8_mixed import MIXED_VARIANT, try_int8_mixed
from converter.machine_independence import use_machine_independent_tensorflow
from converter.mixed_quant import MakeMixed, try_uint8_mixed
from converter.options import ConversionOptions
from converter.prune import prune_graph, resolve_names
from converter.result import (
    ERROR,
    FAILED,
    NOT_RUN,
    PASSED,
    Artifact,
    ArtifactCheck,
    ConversionResult,
    OutputCheck,
    sha256_file,
)
from converter.selection import SelectionHeads, selection_heads, with_selection_tensors
from converter.summary import ModelSummary, TensorSpec
from converter.tfjs_export import check_tfjs_files
from converter.tfjs_ops import ensure_tfjs_runs_ops
from converter.tflite_export import TFLiteOutcome
from converter.verify import (
    CROSS_RUNTIME_TOLERANCE,
    TOLERANCES,
    check_graph_faithfulness,
    make_inputs,
    reference_runner,
    verify_artifacts,
)


@dataclass(frozen=True)
class ConversionPlan:
    """The inputs (with complete shapes for TFLite) and outputs a conversion will use."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    tflite_shapes: dict[str, tuple[int, ...]]  # every input, every dimension known
    given_shapes: dict[str, tuple[int, ...]]  # only what the user gave
    warnings: tuple[str, ...]


def plan_conversion(summary: ModelSummary, options: ConversionOptions) -> ConversionPlan:
    """Resolve the chosen names and shapes against the model, or say what is missing."""
    is_graph = summary.format.is_graph
    if is_graph:
        names = [node.name for node in summary.nodes]
        by_name = {node.name: node for node in summary.nodes}
        if options.inputs:
            input_specs = tuple(_graph_spec(by_name[name]) for name in resolve_names(options.inputs, names))
        else:
            input_specs = tuple(spec for spec in summary.suggested_inputs if not spec.optional)
        if options.outputs:
            output_specs = tuple(_graph_spec(by_name[name]) for name in resolve_names(options.outputs, names))
        else:
            output_specs = summary.suggested_outputs
    else:
        input_specs = _pick_keys(summary.suggested_inputs, options.inputs, "input")
        if options.inputs and len(input_specs) != len(summary.suggested_inputs):
            raise BadOptionsError("a SavedModel or Keras model takes all of its signature inputs; leave --inputs out")
        output_specs = _pick_keys(summary.suggested_outputs, options.outputs, "output")
    if not output_specs:
        raise BadOptionsError("no outputs found or chosen; give them with --outputs")
    if is_graph and not input_specs:
        raise BadOptionsError("no inputs found or chosen; give them with --inputs")

    given: dict[str, tuple[int, ...]] = {}
    keys = {_key(spec): spec for spec in input_specs}
    for raw_name, dims in options.shapes:
        matches = resolve_names([raw_name], list(keys), what="input")
        given[matches[0]] = dims

    complete: dict[str, tuple[int, ...]] = {}
    missing = []
    warnings = []
    for key, spec in keys.items():
        if key in given:
            complete[key] = given[key]
            continue
        if spec.shape is None:
            if is_graph:
                missing.append(f"{key} (rank unknown)")
            continue
        sizes: list[int | None] = list(spec.shape)
        if sizes and (sizes[0] is None or sizes[0] < 0) and is_graph:
            sizes[0] = 1
            if Target.TFLITE in options.targets:
                warnings.append(f"input {key}: batch size set to 1 in the .tflite")
        unknown = [i for i, d in enumerate(sizes) if d is None or d < 0]
        if unknown and is_graph:
            shown = ",".join("?" if d is None or d < 0 else str(d) for d in sizes)
            missing.append(f"{key} [{shown}] (dimension {', '.join(map(str, unknown))})")
        complete[key] = tuple(int(d) if d is not None and d >= 0 else -1 for d in sizes)
    if missing:
        raise BadOptionsError(
            "give the full shape of " + "; ".join(missing) + f", e.g. --shape {next(iter(keys))}:1,224,224,3"
        )
    return ConversionPlan(input_specs, tuple(output_specs), complete, given, tuple(warnings))


def _key(spec: TensorSpec) -> str:
    return spec.key or spec.name


def _graph_spec(node: object) -> TensorSpec:
    return TensorSpec(node.name, node.dtype or "unknown", node.shape, op=node.op)  # type: ignore[attr-defined]


def _pick_keys(available: tuple[TensorSpec, ...], requested: tuple[str, ...], what: str) -> tuple[TensorSpec, ...]:
    if not requested:
        return available
    by_key = {_key(spec): spec for spec in available}
    return tuple(by_key[key] for key in resolve_names(requested, list(by_key), what=f"signature {what}"))


def _check_layers_model_possible(summary: ModelSummary) -> None:
    if not summary.format.is_keras:
        raise BadOptionsError("a TF.js layers model can only be made from a Keras model; use tfjs")
    if summary.details.get("keras_version", "").startswith("3"):
        # tensorflowjs copies Keras 3's InputLayer config (batch_shape) as it is, and TF.js 4.22
        # refuses to load it: the files would be written and then fail in the browser.
        raise BadOptionsError(
            "TF.js cannot load layers models made from Keras 3 files; use tfjs (a graph model) instead"
        )


def tool_versions() -> dict[str, str]:
    """The versions of what does the converting, for the record."""
    import keras
    import tensorflow as tf
    from tensorflowjs import version

    return {
        "python": sys.version.split()[0],
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "tensorflowjs": version.version,
    }


def artifact_stem(original: Path) -> str:
    """'posenet.pb' -> 'posenet', 'mnet.tar.gz' -> 'mnet', a folder -> its name, 'x/model.json' -> 'x'."""
    name = original.name
    if name == "model.json" and original.parent.name:
        return original.parent.name
    for suffix in (".tar.gz", ".tgz", ".zip", ".pbtxt", ".pb", ".hdf5", ".h5", ".keras", ".tar", ".meta", ".json"):
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name or "model"


def convert_variants_in_process(
    model_path: Path,
    out_dir: Path,
    variants: Sequence[tuple[ConversionOptions, str | None]],
    work_dir: Path,
    limits: ArchiveLimits = ArchiveLimits(),
    progress: ProgressCallback | None = None,
    on_artifact: ArtifactCallback | None = None,
) -> list[ConversionResult]:
    """Quantization variants of one model (options, artifact stem), one after another in this process (the
    reference outputs computed once). A variant after the first that makes no file at all (int8 of a model with
    an op that has no integer kernel) is a result whose checks say why, beside the others; the first variant's
    failure, or a bad option, is the model's and is raised."""
    results: list[ConversionResult] = []
    for index, (options, stem) in enumerate(variants):
        variant_dir = work_dir / f"variant{index}"
        try:
            results.append(
                convert_in_process(model_path, out_dir, options, variant_dir, limits, stem, progress, on_artifact)
            )
        except ConversionError as error:
            if not results:
                raise
            results.append(_variant_not_made(results[0], options, error))
    return results


def _variant_not_made(first: ConversionResult, options: ConversionOptions, error: ConversionError) -> ConversionResult:
    checks = tuple(
        ArtifactCheck(target, quant, ERROR, error.message, TOLERANCES[quant])
        for target in options.targets
        for quant in [options.quantization_of(target)]
    )
    return replace(first, artifacts=(), validation=checks, timings={}, warnings=(), graph_check=(), log=error.log)


def convert_in_process(
    model_path: Path,
    out_dir: Path,
    options: ConversionOptions,
    work_dir: Path,
    limits: ArchiveLimits = ArchiveLimits(),
    stem: str | None = None,
    progress: ProgressCallback | None = None,
    on_artifact: ArtifactCallback | None = None,
) -> ConversionResult:
    """Convert `model_path` to each target in `options`, writing artifacts into `out_dir`.

    `work_dir` is a private scratch folder (archives are unpacked there). `progress` is called
    with each stage's name as it starts: loading, convert_tflite, validate, convert_tfjs, validate...
    Each artifact is verified as soon as it is written, and `on_artifact` is called with every one
    that may be delivered and its check (None without verification), so that it can be sent before
    the next target is converted. An artifact that fails to load or run is deleted and left out.
    Raises ConvbotError subclasses with a short message; the full log is on the exception.
    """
    use_machine_independent_tensorflow()  # also in-process callers (tests, library users): read lazily by TF
    stages = StageClock(progress)
    out_dir.mkdir(parents=True, exist_ok=True)
    work_dir.mkdir(parents=True, exist_ok=True)
    with stages.stage("loading"):
        source = detect_model(Path(model_path), work_dir / "source", limits)
        original = source
        if source.format is ModelFormat.TFJS_GRAPH:
            # A TF.js graph model goes on as the TensorFlow graph it is rebuilt into.
            source = _rebuild_tfjs_graph(source, work_dir)
        elif source.format is ModelFormat.TF1_CHECKPOINT:
            # A checkpoint goes on as the graph frozen for the chosen outputs, inspected and planned anew.
            source = _freeze_tf1_checkpoint(source, options, work_dir)
        summary = inspect_source(source)
        plan = plan_conversion(summary, options)
        calibration = _load_calibration(options, plan, work_dir) if options.needs_calibration else None
    stem = stem or artifact_stem(Path(model_path))
    warnings = list(options.warnings) + list(plan.warnings)
    if Target.TFJS_LAYERS in options.targets:
        _check_layers_model_possible(summary)

    with stages.stage("load_tensorflow"):  # most of a cold conversion; nothing in a warm worker
        versions = tool_versions()

    logs: list[str] = []
    verification = (
        Verification(source, summary, plan, options, original, Path(model_path), calibration)
        if options.verify
        else None
    )
    if verification is not None:
        verification.start_early()
    delivery = Delivery(out_dir, verification, stages, on_artifact)
    if source.format.is_graph:
        needs_flex = _convert_graph(source, plan, options, out_dir, work_dir, stem, stages, logs, delivery, calibration)
    else:
        needs_flex = _convert_via_saved_model(
            source, summary, plan, options, out_dir, work_dir, stem, stages, logs, delivery, calibration
        )
    delivery.finish()
    logs += [failure.log for failure in delivery.failures]
    if needs_flex:
        warnings.append(
            "the .tflite needs the Flex delegate (Select TF ops) at run time: link tensorflow-lite-select-tf-ops"
        )
    return ConversionResult(
        source=str(model_path),
        format=original.format,
        inputs=plan.inputs,
        outputs=plan.outputs,
        artifacts=tuple(delivery.artifacts),
        timings={k: round(v, 4) for k, v in stages.timings.items()},
        versions=versions,
        warnings=tuple(warnings),
        needs_flex_delegate=needs_flex,
        validation=tuple(delivery.checks),
        graph_check=verification.graph_check if verification is not None else (),
        log="\n".join(log for log in logs if log.strip()),
    )


ProgressCallback = Callable[[str], None]
ArtifactCallback = Callable[[Artifact, ArtifactCheck | None], None]


class Delivery:
    """What a conversion delivers: each artifact verified as it is written, kept unless it failed to load or run.

    With several targets, one whose conversion fails (an op its converter refuses, a TF.js op TF.js lacks) is
    recorded as that target's error, and the others are still delivered; a file already sent stays good.
    """

    def __init__(
        self,
        out_dir: Path,
        verification: Verification | None,
        stages: StageClock,
        on_artifact: ArtifactCallback | None,
    ) -> None:
        self.out_dir = out_dir
        self.verification = verification
        self.stages = stages
        self.on_artifact = on_artifact
        self.artifacts: list[Artifact] = []
        self.checks: list[ArtifactCheck] = []
        self.failures: list[ConversionError] = []
        self.produced = 0  # artifacts written, delivered or not

    @contextmanager
    def attempt(self, target: Target, quantization: Quantization) -> Iterator[None]:
        """Convert one target; a ConversionError fails this target alone (see `finish`), and what it had
        begun to write in the output folder is removed."""
        before = _entries(self.out_dir)
        try:
            yield
        except ConversionError as error:
            for path, modified in _entries(self.out_dir).items():
                if before.get(path) != modified:  # new, or written again by this attempt
                    _remove(path)
            self.failures.append(error)
            self.checks.append(ArtifactCheck(target, quantization, ERROR, error.message, TOLERANCES[quantization]))

    def finish(self) -> None:
        """No target converted: the first one's error is the conversion's, as a single target's would be."""
        if self.failures and not self.produced:
            raise self.failures[0]

    def add(self, artifact: Artifact, checked: ArtifactCheck | None = None) -> None:
        """`checked`: the artifact's check when it was already verified (a uint8-mixed model)."""
        self.produced += 1
        check = checked
        if check is None and self.verification is not None:
            with self.stages.stage("validate"):
                check = self.verification.check(artifact)
        if check is not None:
            self.checks.append(check)
            if check.status == ERROR:  # never delivered: its check keeps the reason
                _remove(Path(artifact.path))
                return
        self.artifacts.append(artifact)
        if self.on_artifact is not None:
            self.on_artifact(artifact, check)


# Every stage id a conversion reports through StageClock, for readers that name each stage to users.
STAGES = (
    "loading",
    "load_tensorflow",
    "load",
    "convert_tflite",
    "validate",
    "convert_tfjs",
    "convert_tfjs_layers",
    "write_pb",
    "write_saved_model",
)


class StageClock:
    """Times each stage of a conversion and reports each as it starts (for progress messages)."""

    def __init__(self, progress: ProgressCallback | None = None) -> None:
        self.timings: dict[str, float] = {}
        self.progress = progress

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        if self.progress is not None:
            self.progress(name)
        started = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - started


def _convert_graph(
    source: ModelSource,
    plan: ConversionPlan,
    options: ConversionOptions,
    out_dir: Path,
    work_dir: Path,
    stem: str,
    stages: StageClock,
    logs: list[str],
    delivery: Delivery,
    calibration: CalibrationSet | None = None,
) -> bool:
    from converter.tensorflow_export import saved_model_from_graph, write_frozen_graph
    from converter.tfjs_export import tfjs_from_frozen_graph
    from converter.tflite_export import tflite_from_frozen_graph

    graph = read_graph_def(source.path, text=source.format is ModelFormat.FROZEN_GRAPH_TEXT)
    inputs = [spec.name for spec in plan.inputs]
    outputs = [spec.name for spec in plan.outputs]
    needs_flex = False
    if Target.TFLITE in options.targets:
        with delivery.attempt(Target.TFLITE, options.tflite_quantization):
            with stages.stage("convert_tflite"):
                pruned_path = work_dir / "pruned_tflite.pb"
                pruned_path.write_bytes(prune_graph(graph, inputs, outputs, plan.tflite_shapes).SerializeToString())
                outcome = tflite_from_frozen_graph(
                    pruned_path,
                    inputs,
                    outputs,
                    plan.tflite_shapes,
                    options.tflite_quantization,
                    out_dir / f"{stem}.tflite",
                    calibration.representative_dataset if calibration is not None else None,
                )
            logs.append(outcome.log)
            needs_flex = outcome.needs_flex_delegate
            delivery.add(Artifact.from_path(Target.TFLITE, outcome.path, options.tflite_quantization))
            _offer_int8_mixed(delivery, outcome, out_dir / f"{stem}_mixed.tflite")
    if not any(target in options.targets for target in (Target.TFJS, Target.FROZEN_GRAPH, Target.SAVED_MODEL)):
        return needs_flex
    # TF.js and TensorFlow keep unknown dimensions (a dynamic batch is useful); only given shapes apply.
    dynamic = prune_graph(graph, inputs, outputs, plan.given_shapes)
    if Target.TFJS in options.targets:
        with delivery.attempt(Target.TFJS, options.tfjs_quantization):
            with stages.stage("convert_tfjs"):
                pruned_path = write_frozen_graph(dynamic, work_dir / "pruned_tfjs.pb")
                tfjs_dir = _fresh_dir(out_dir / f"{stem}_tfjs")
                logs.append(tfjs_from_frozen_graph(pruned_path, outputs, options.tfjs_quantization, tfjs_dir))
            delivery.add(_checked_tfjs_artifact(tfjs_dir, Target.TFJS, options.tfjs_quantization))

        def make_mixed(float16_weights: Sequence[str]) -> Artifact:
            mixed_dir = _fresh_dir(out_dir / f"{stem}_mixed_tfjs")
            logs.append(
                tfjs_from_frozen_graph(pruned_path, outputs, Quantization.UINT8_MIXED, mixed_dir, float16_weights)
            )
            return _checked_tfjs_artifact(mixed_dir, Target.TFJS, Quantization.UINT8_MIXED)

        _offer_uint8_mixed(delivery, make_mixed)
    if Target.FROZEN_GRAPH in options.targets:
        with delivery.attempt(Target.FROZEN_GRAPH, Quantization.NONE):
            with stages.stage("write_pb"):
                pb_path = write_frozen_graph(dynamic, out_dir / f"{stem}.pb")
            delivery.add(Artifact.from_path(Target.FROZEN_GRAPH, pb_path, Quantization.NONE))
    if Target.SAVED_MODEL in options.targets:
        with delivery.attempt(Target.SAVED_MODEL, Quantization.NONE):
            with stages.stage("write_saved_model"):
                zip_path = saved_model_from_graph(
                    dynamic, inputs, outputs, work_dir, out_dir / f"{stem}_saved_model.zip"
                )
            delivery.add(Artifact.from_path(Target.SAVED_MODEL, zip_path, Quantization.NONE))
    return needs_flex


def _offer_uint8_mixed(
    delivery: Delivery, make: MakeMixed, ranking_graph: Callable[[], SourceGraph] | None = None
) -> None:
    """The TF.js uint8 model just checked failed: try uint8-mixed (converter/mixed_quant.py), deliver it when it
    passes, and say in the uint8 check's advice what was tried. The weights are ranked on the source graph, or,
    for a source without one, on the graph `ranking_graph` makes."""
    failed_check = delivery.checks[-1] if delivery.checks else None
    if failed_check is None or failed_check.status != FAILED or failed_check.target is not Target.TFJS:
        return
    verification = delivery.verification
    if failed_check.quantization is not Quantization.UINT8 or verification is None:
        return
    if verification.graph is None and ranking_graph is None:
        return
    with delivery.attempt(Target.TFJS, Quantization.UINT8_MIXED), delivery.stages.stage("convert_tfjs"):
        graph = verification.graph
        if graph is None and ranking_graph is not None:
            graph = ranking_graph()
        assert graph is not None  # one of the two, as checked above
        outcome = try_uint8_mixed(delivery.artifacts[-1], failed_check, graph, make, verification.check)
        advice = "; ".join(filter(None, [failed_check.advice, outcome.sentence]))
        delivery.checks[delivery.checks.index(failed_check)] = replace(failed_check, advice=advice)
        if outcome.artifact is not None:
            delivery.add(outcome.artifact, outcome.check)


def _offer_int8_mixed(delivery: Delivery, outcome: TFLiteOutcome, mixed_path: Path) -> None:
    """The int8 .tflite just checked failed on the user's samples: rank its layers with TensorFlow's quantization
    debugger and try int8-mixed (converter/int8_mixed.py), deliver it when it passes, and say in the int8 check's
    advice what was found and tried. Its own attempt: a failure here leaves the int8 file as it is."""
    failed_check = delivery.checks[-1] if delivery.checks else None
    if failed_check is None or failed_check.status != FAILED or not failed_check.quantization.is_full_integer:
        return
    verification = delivery.verification
    if outcome.int8_recipe is None or verification is None or verification.calibration is None:
        return
    mixed = MIXED_VARIANT[failed_check.quantization]
    with delivery.attempt(Target.TFLITE, mixed), delivery.stages.stage("convert_tflite"):
        samples = verification.calibration.samples
        tried = try_int8_mixed(delivery.artifacts[-1], outcome.int8_recipe, samples, mixed_path, verification.check)
        advice = "; ".join(filter(None, [failed_check.advice, tried.sentence]))
        delivery.checks[delivery.checks.index(failed_check)] = replace(failed_check, advice=advice)
        if tried.artifact is not None:
            delivery.add(tried.artifact, tried.check)


def _convert_via_saved_model(
    source: ModelSource,
    summary: ModelSummary,
    plan: ConversionPlan,
    options: ConversionOptions,
    out_dir: Path,
    work_dir: Path,
    stem: str,
    stages: StageClock,
    logs: list[str],
    delivery: Delivery,
    calibration: CalibrationSet | None = None,
) -> bool:
    from converter.serving_export import export_keras, export_saved_model_subset
    from converter.tensorflow_export import frozen_graph_from_saved_model, save_zipped_saved_model
    from converter.tfjs_export import tfjs_from_saved_model, tfjs_layers_from_keras
    from converter.tfjs_input import tfjs_to_graph_def
    from converter.tflite_export import tflite_from_saved_model

    output_keys = [_key(spec) for spec in plan.outputs]
    shapes: dict[str, tuple[int | None, ...] | None] = {k: tuple(v) for k, v in plan.given_shapes.items()}
    serving_dir = source.path
    needs_export = (
        source.format.is_keras or bool(plan.given_shapes) or (len(output_keys) != len(summary.suggested_outputs))
    )
    wants_graph_targets = any(t is not Target.TFJS_LAYERS for t in options.targets)
    if needs_export and wants_graph_targets:
        with stages.stage("load"):
            export_dir = _fresh_dir(work_dir / "serving")
            if source.format.is_keras:
                serving_dir = export_keras(source.path, plan.inputs, output_keys, shapes, export_dir)
            else:
                key = summary.details.get("signature", fmt.SERVING_SIGNATURE)
                serving_dir = export_saved_model_subset(source.path, key, plan.inputs, output_keys, shapes, export_dir)
    needs_flex = False
    if Target.TFLITE in options.targets:
        with delivery.attempt(Target.TFLITE, options.tflite_quantization):
            with stages.stage("convert_tflite"):
                outcome = tflite_from_saved_model(
                    serving_dir,
                    options.tflite_quantization,
                    out_dir / f"{stem}.tflite",
                    calibration.representative_dataset if calibration is not None else None,
                )
            logs.append(outcome.log)
            needs_flex = outcome.needs_flex_delegate
            delivery.add(Artifact.from_path(Target.TFLITE, outcome.path, options.tflite_quantization))
            _offer_int8_mixed(delivery, outcome, out_dir / f"{stem}_mixed.tflite")
    if Target.TFJS in options.targets:
        with delivery.attempt(Target.TFJS, options.tfjs_quantization):
            with stages.stage("convert_tfjs"):
                tfjs_dir = _fresh_dir(out_dir / f"{stem}_tfjs")
                logs.append(tfjs_from_saved_model(serving_dir, output_keys, options.tfjs_quantization, tfjs_dir))
            delivery.add(_checked_tfjs_artifact(tfjs_dir, Target.TFJS, options.tfjs_quantization))

        def make_mixed(float16_weights: Sequence[str]) -> Artifact:
            mixed_dir = _fresh_dir(out_dir / f"{stem}_mixed_tfjs")
            logs.append(
                tfjs_from_saved_model(serving_dir, output_keys, Quantization.UINT8_MIXED, mixed_dir, float16_weights)
            )
            return _checked_tfjs_artifact(mixed_dir, Target.TFJS, Quantization.UINT8_MIXED)

        def ranking_graph() -> SourceGraph:
            """The float32 TF.js model's graph: its weights have the names the uint8 model stores them under,
            which a Keras model's or a SavedModel's own graph does not (there they are captured variables)."""
            float_dir = _fresh_dir(work_dir / "ranking_tfjs")
            logs.append(tfjs_from_saved_model(serving_dir, output_keys, Quantization.NONE, float_dir))
            graph_def, _ = tfjs_to_graph_def(float_dir)
            path = work_dir / "ranking_tfjs.pb"
            path.write_bytes(graph_def.SerializeToString())
            return SourceGraph(path)

        _offer_uint8_mixed(delivery, make_mixed, ranking_graph)
    if Target.FROZEN_GRAPH in options.targets:
        with delivery.attempt(Target.FROZEN_GRAPH, Quantization.NONE):
            with stages.stage("write_pb"):
                # The user's own SavedModel keeps its signature's name; an exported one is serving_default.
                exported = serving_dir != source.path
                signature = (
                    fmt.SERVING_SIGNATURE if exported else summary.details.get("signature", fmt.SERVING_SIGNATURE)
                )
                pb_path = frozen_graph_from_saved_model(serving_dir, signature, out_dir / f"{stem}.pb")
            delivery.add(Artifact.from_path(Target.FROZEN_GRAPH, pb_path, Quantization.NONE))
    if Target.SAVED_MODEL in options.targets:
        with delivery.attempt(Target.SAVED_MODEL, Quantization.NONE):
            with stages.stage("write_saved_model"):
                zip_path = save_zipped_saved_model(serving_dir, out_dir / f"{stem}_saved_model.zip")
            delivery.add(Artifact.from_path(Target.SAVED_MODEL, zip_path, Quantization.NONE))
    if Target.TFJS_LAYERS in options.targets:
        with delivery.attempt(Target.TFJS_LAYERS, options.tfjs_quantization):
            with stages.stage("convert_tfjs_layers"):
                layers_dir = _fresh_dir(out_dir / f"{stem}_tfjs_layers")
                logs.append(tfjs_layers_from_keras(source.path, source.format, options.tfjs_quantization, layers_dir))
            delivery.add(_checked_tfjs_artifact(layers_dir, Target.TFJS_LAYERS, options.tfjs_quantization))
    return needs_flex


def _load_calibration(options: ConversionOptions, plan: ConversionPlan, work_dir: Path) -> CalibrationSet:
    """The user's samples for a full-integer .tflite, checked against the planned inputs (batch 1 where open)."""
    slots = [
        InputSlot(_key(spec), spec.dtype, _batch_of_one(plan.tflite_shapes.get(_key(spec), ()))) for spec in plan.inputs
    ]
    assert options.calibration is not None  # needs_calibration: ConversionOptions checked it
    return load_calibration(Path(options.calibration), slots, options.input_range, work_dir, options.max_calibration_mb)


def _batch_of_one(shape: tuple[int, ...]) -> tuple[int, ...]:
    return (1, *shape[1:]) if shape and shape[0] < 0 else shape


def _rebuild_tfjs_graph(source: ModelSource, work_dir: Path) -> ModelSource:
    from converter.tfjs_input import tfjs_to_graph_def

    graph_def, _ = tfjs_to_graph_def(source.path)
    rebuilt = work_dir / "from_tfjs.pb"
    rebuilt.write_bytes(graph_def.SerializeToString())
    return ModelSource(ModelFormat.FROZEN_GRAPH, rebuilt, source.original, source.file_size)


def _freeze_tf1_checkpoint(source: ModelSource, options: ConversionOptions, work_dir: Path) -> ModelSource:
    from converter.checkpoint_input import freeze_checkpoint

    # The outputs are chosen on the training graph, as inspection showed it; it is planned as the
    # frozen graph it becomes, so names resolve the same way.
    summary = inspect_source(source)
    plan = plan_conversion(replace(summary, format=ModelFormat.FROZEN_GRAPH), options)
    graph_def = freeze_checkpoint(source.path, [spec.name for spec in plan.outputs])
    frozen = work_dir / "from_checkpoint.pb"
    frozen.write_bytes(graph_def.SerializeToString())
    return ModelSource(ModelFormat.FROZEN_GRAPH, frozen, source.original, source.file_size)


def _tfjs_reference(model_dir: Path, output_keys: list[str]) -> Any:
    """The original TF.js model run in TF.js itself: what its artifacts must match."""
    from converter.tfjs_runtime import run_tfjs_model

    def run(inputs: dict[str, Any]) -> dict[str, Any]:
        return run_tfjs_model(model_dir, inputs, output_keys).outputs

    return run


CALIBRATION_SAMPLES_VERIFIED = 3  # besides the usual inputs; every sample counts in the top-1 agreement
RAN = (PASSED, FAILED)

# The reference outputs (and graph check) of the last model verified in this process, by Verification._shared_key.
_SHARED_REFERENCE: dict[tuple[Any, ...], tuple[list[Any], tuple[OutputCheck, ...]]] = {}


def model_identity(model_path: Path) -> tuple[Any, ...]:
    """What a model's reference outputs depend on in its file: a file's SHA-256 (hashed once per path, size and
    mtime: the variants of one job do not hash it again); a folder (a SavedModel given to the CLI) by its path
    and mtime, as hashing every file of it would cost more than the sharing saves."""
    stat = model_path.stat()
    if model_path.is_dir():
        return (str(model_path.resolve()), stat.st_mtime_ns)
    seen = (str(model_path.resolve()), stat.st_size, stat.st_mtime_ns)
    if seen not in _MODEL_DIGESTS:
        _MODEL_DIGESTS.clear()  # one model's at a time, as _SHARED_REFERENCE
        _MODEL_DIGESTS[seen] = sha256_file(model_path)
    return (_MODEL_DIGESTS[seen], stat.st_size)


_MODEL_DIGESTS: dict[tuple[Any, ...], str] = {}


class Verification:
    """Runs the original model once on the check's inputs and checks each artifact against it as it comes.

    `source` is what was converted (for a TF.js model or a checkpoint, the graph rebuilt or frozen from
    `original`). The reference outputs are computed at the first artifact and shared by all of them; for a
    TF.js model the rebuilt graph is checked against it too (`graph_check`): is the conversion faithful,
    apart from each artifact's runtime (converter/runtime_note.py)?
    """

    def __init__(
        self,
        source: ModelSource,
        summary: ModelSummary,
        plan: ConversionPlan,
        options: ConversionOptions,
        original: ModelSource,
        model_path: Path | None = None,
        calibration: CalibrationSet | None = None,
    ) -> None:
        self.output_keys = [_key(spec) for spec in plan.outputs]
        self.calibration = calibration
        self.graph_check: tuple[OutputCheck, ...] = ()
        self._reference_run: Callable[[dict[str, Any]], dict[str, Any]] | None = None
        self._expected: list[Any] | None = None  # the reference's outputs on input_sets, computed once
        self._early: Future[list[Any]] | None = None
        self._reference_lock = threading.Lock()
        self._shared_key: tuple[Any, ...] | None = None
        self.unknown_dimensions = ""
        shapes = {}
        for spec in plan.inputs:
            known = plan.tflite_shapes.get(_key(spec))
            dims = list(known or ())
            if dims and dims[0] < 0:
                dims[0] = 1
            if known is None or any(d < 0 for d in dims):  # () is a scalar: known
                self.unknown_dimensions = f"input {_key(spec)} has unknown dimensions; give --shape to verify"
                return
            shapes[_key(spec)] = tuple(dims)
        self.input_sets = make_inputs(plan.inputs, shapes)
        if options.verify_inputs:
            self.input_sets.insert(0, load_user_inputs(Path(options.verify_inputs), list(shapes)))
        if calibration is not None:  # an int8 model is checked on inputs like the ones its ranges were set on
            self.input_sets.extend(calibration.first(CALIBRATION_SAMPLES_VERIFIED))
        self.source, self.original = source, original
        # The variants of one model (--compare-quant), and the next job on the same bytes in this process,
        # share its reference outputs: same content, outputs and inputs. By content, not path: a worker fetches
        # each job's model from the storage into a folder of its own.
        self._shared_key = (
            (model_identity(model_path), tuple(self.output_keys), repr(shapes))
            if model_path is not None and not options.verify_inputs and calibration is None
            else None
        )
        self.signature = summary.details.get("signature", fmt.SERVING_SIGNATURE)
        # A checkpoint's reference is the training graph, whose node names need not match the frozen graph's.
        checkpoint = original.format is ModelFormat.TF1_CHECKPOINT
        self.heads = None if checkpoint else _selection_heads(source, self.output_keys)
        self.graph = _source_graph(source)
        tfjs = original.format is ModelFormat.TFJS_GRAPH
        self.tolerance_floor = CROSS_RUNTIME_TOLERANCE if tfjs else 0.0

    def check(self, artifact: Artifact) -> ArtifactCheck:
        if self.unknown_dimensions:
            reason = self.unknown_dimensions
            return ArtifactCheck(
                artifact.target, artifact.quantization, NOT_RUN, reason, TOLERANCES[artifact.quantization]
            )
        if self._expected is None:
            if self._shared_key is not None and self._shared_key in _SHARED_REFERENCE:
                self._expected, self.graph_check = _SHARED_REFERENCE[self._shared_key]
            else:
                self._expected = self._early.result() if self._early is not None else self._compute_expected()
                self.graph_check = self._check_graph(self._expected)
                if self._shared_key is not None:
                    _SHARED_REFERENCE.clear()  # one model's at a time: a process converts one model at a time
                    _SHARED_REFERENCE[self._shared_key] = (self._expected, self.graph_check)
        inputs, expected = self.input_sets, self._expected
        on_samples = self.calibration is not None and artifact.quantization.is_calibrated
        if on_samples:  # an int8 file is judged on inputs like the ones its ranges were set on
            inputs, expected = inputs[-self._samples_checked :], expected[-self._samples_checked :]
        (check,) = verify_artifacts(
            [artifact],
            self.output_keys,
            inputs,
            self._run_reference,  # not run: the outputs are given; built only when the outputs are computed here
            self.tolerance_floor,
            self.heads,
            source_graph=self.graph,
            expected=expected,
            graph_faithful=all(output.passed for output in self.graph_check),
        )
        return self._with_agreement(artifact, check) if on_samples else check

    @property
    def _samples_checked(self) -> int:
        """How many of the user's samples end the input sets (none without calibration)."""
        return len(self.calibration.first(CALIBRATION_SAMPLES_VERIFIED)) if self.calibration is not None else 0

    def _with_agreement(self, artifact: Artifact, check: ArtifactCheck) -> ArtifactCheck:
        """A full-integer .tflite, checked on the user's samples: for information, its error on the check's other
        inputs (seeded random values, all ones: far from the samples, int8 activations saturate, so they do not
        decide), and its top-1 agreement on images in class folders."""
        if check.status not in RAN:
            return check
        assert self._expected is not None and self.calibration is not None  # computed by check(); int8 has samples
        count = self._samples_checked
        error = worst_error_on_inputs(
            Path(artifact.path), self.input_sets[:-count], self._expected[:-count], self.output_keys
        )
        figure = (
            f"checked on {count} of your samples; on random and all-ones inputs, outside the ranges your samples "
            f"set, up to {error:.2e} of scale (for information)"
        )
        agreement = tflite_top1_agreement(Path(artifact.path), self._run_reference, self.calibration, self.output_keys)
        return replace(check, message="; ".join(filter(None, [check.message, figure])), agreement=agreement)

    def start_early(self) -> None:
        """Compute the reference outputs on a thread while the first target converts (a graph source: its own
        TensorFlow session, or TF.js for a TF.js model). Keras and SavedModel sources are loaded by the
        conversion itself at the same time, so their reference waits for the first artifact."""
        if self.unknown_dimensions or not self.source.format.is_graph:
            return
        if self._shared_key is not None and self._shared_key in _SHARED_REFERENCE:
            return  # already computed by an earlier variant of the same model
        if self.original.format is ModelFormat.TF1_CHECKPOINT:
            return
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="convbot-reference")
        self._early = executor.submit(self._compute_expected)
        executor.shutdown(wait=False)  # the thread ends with its one task

    def _compute_expected(self) -> list[Any]:
        return [self._run_reference(inputs) for inputs in self.input_sets]

    def _run_reference(self, inputs: dict[str, Any]) -> dict[str, Any]:
        return self._reference_ready()(inputs)

    def _reference_ready(self) -> Callable[[dict[str, Any]], dict[str, Any]]:
        with self._reference_lock:
            if self._reference_run is None:
                self._reference_run = self._reference()
            return self._reference_run

    def _reference(self) -> Callable[[dict[str, Any]], dict[str, Any]]:
        source, keys, heads = self.source, self.output_keys, self.heads
        if self.original.format is ModelFormat.TFJS_GRAPH:
            return with_selection_tensors(partial(_tfjs_reference, self.original.path), keys, heads)
        if self.original.format is ModelFormat.TF1_CHECKPOINT:
            from converter.checkpoint_input import checkpoint_reference

            return checkpoint_reference(self.original.path, keys)  # type: ignore[no-any-return]
        signature = self.signature
        return with_selection_tensors(
            lambda wanted: reference_runner(source.format, source.path, wanted, signature, plain=True), keys, heads
        )

    def _check_graph(self, expected: list[Any]) -> tuple[OutputCheck, ...]:
        """For a TF.js model: the rebuilt graph, run in TensorFlow, against the model run in TF.js."""
        if self.original.format is not ModelFormat.TFJS_GRAPH:
            return ()
        source = self.source
        graph_reference = with_selection_tensors(
            lambda keys: reference_runner(ModelFormat.FROZEN_GRAPH, source.path, keys, plain=True),
            self.output_keys,
            self.heads,
        )
        return check_graph_faithfulness(graph_reference, expected, self.input_sets, self.output_keys, self.heads)


def _selection_heads(source: ModelSource, output_keys: list[str]) -> SelectionHeads | None:
    """The outputs chosen by TopK/NMS/ArgMax, found in the graph (a frozen or rebuilt one)."""
    if not source.format.is_graph:
        return None
    return selection_heads(source.path, output_keys, text=source.format is ModelFormat.FROZEN_GRAPH_TEXT)


def _entries(folder: Path) -> dict[Path, int]:
    """The entries of `folder` and when each was last modified."""
    return {path: path.lstat().st_mtime_ns for path in folder.iterdir()}


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _source_graph(source: ModelSource) -> SourceGraph | None:
    """The graph a failed artifact is walked against node by node; SavedModel and Keras sources have none."""
    if not source.format.is_graph:
        return None
    return SourceGraph(source.path, text=source.format is ModelFormat.FROZEN_GRAPH_TEXT)


def load_user_inputs(path: Path, keys: list[str]) -> dict[str, Any]:
    """Inputs a user gave: a .npy for a single-input model, or a .npz keyed by input name."""
    import numpy as np

    try:
        loaded = np.load(path, allow_pickle=False)  # never unpickle: it would run code from the file
    except (OSError, ValueError) as error:
        raise BadOptionsError(f"cannot read the inputs file {path.name}: {error}") from error
    if isinstance(loaded, np.ndarray):
        if len(keys) != 1:
            raise BadOptionsError(f"the model has {len(keys)} inputs; give them in a .npz keyed {', '.join(keys)}")
        return {keys[0]: loaded}
    missing = [key for key in keys if key not in loaded.files]
    if missing:
        raise BadOptionsError(f"the inputs file lacks {', '.join(missing)} (it has {', '.join(loaded.files)})")
    return {key: loaded[key] for key in keys}


def _fresh_dir(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def _checked_tfjs_artifact(folder: Path, target: Target, quantization: Quantization) -> Artifact:
    problems = check_tfjs_files(folder)
    if problems:
        raise ConversionError(f"TF.js: the converter wrote an inconsistent model: {problems[0]}", "\n".join(problems))
    if target is Target.TFJS:
        ensure_tfjs_runs_ops(folder)  # fused activations TF.js lacks are split, other gaps refused
    return Artifact.from_path(target, folder, quantization)

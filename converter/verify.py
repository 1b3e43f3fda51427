"""Verification: run the source model and every artifact on the same inputs, in the runtime its
users will run it in (the TFLite interpreter; TF.js itself in Node.js), and compare outputs.

Runs in the conversion process: it imports TensorFlow.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from converter import formats as fmt
from converter.formats import ModelFormat, Quantization, Target
from converter.result import ERROR, FAILED, NOT_RUN, PASSED, Artifact, ArtifactCheck, OutputCheck, TensorEntry
from converter.selection import SelectionHeads, artifact_tensors, tensor_name, tie_message
from converter.summary import TensorSpec
from converter.tflite_run import run_signature, tensor_quantization

if TYPE_CHECKING:
    from converter.culprit import SourceGraph

Arrays = dict[str, NDArray[Any]]

# Largest error allowed, relative to the output's scale (its largest magnitude), per variant.
# float32 matches TensorFlow's own checks (1e-4 of scale); reduced precision is looser, and
# the measured number is always reported so a user can judge.
TOLERANCES = {
    Quantization.NONE: 1e-4,
    Quantization.FLOAT16: 1e-2,
    Quantization.UINT16: 1e-2,
    Quantization.DYNAMIC: 1e-1,
    Quantization.UINT8: 1e-1,
    Quantization.UINT8_MIXED: 1e-1,  # judged as the uint8 it stands in for
    # Full-integer: every activation rounded to 8 bits too, on ranges set by the user's samples.
    Quantization.INT8: 1e-1,
    Quantization.INT8_IO: 1e-1,
    Quantization.INT8_MIXED: 1e-1,  # judged as the int8 it stands in for
    Quantization.INT8_IO_MIXED: 1e-1,
}
# When the reference is another engine (a TF.js model run in TF.js), float32 results differ by the
# order each engine sums in: on a deep model (rvm, 910 nodes) TensorFlow running the exact rebuilt
# graph is 1.03e-4 of scale from TF.js. Allow 1e-3 there (TF.js's own end-to-end tests allow 1e-3 on
# float32 backends); the measured figure is always shown.
CROSS_RUNTIME_TOLERANCE = 1e-3


def tolerance_for(quantization: Quantization, floor: float = 0.0) -> float:
    return max(TOLERANCES[quantization], floor)


def make_inputs(specs: Sequence[TensorSpec], shapes: Mapping[str, tuple[int, ...]], seed: int = 0) -> list[Arrays]:
    """Seeded random values in a range that suits each input's dtype, then all ones."""
    rng = np.random.default_rng(seed)
    random_set: Arrays = {}
    ones: Arrays = {}
    for spec in specs:
        key = spec.key or spec.name
        shape = tuple(shapes[key])
        dtype = np.dtype("float32" if spec.dtype in ("unknown", "") else spec.dtype)
        if dtype == np.bool_:
            random_set[key] = rng.random(shape) < 0.5
        elif np.issubdtype(dtype, np.integer):
            random_set[key] = rng.integers(0, 10, shape).astype(dtype)
        else:
            random_set[key] = rng.random(shape).astype(dtype)
        ones[key] = np.ones(shape, dtype)
    return [random_set, ones]


def compare(name: str, got: NDArray[Any], expected: NDArray[Any], tolerance: float, scale: float = 0.0) -> OutputCheck:
    """Max absolute and scale-relative error of `got` against `expected`. The scale is the output's largest
    magnitude: in `expected`, or `scale` when larger (the output's range over every input set of the check, so
    that an input on which the output is all but zero, lgamma(1) = 0, does not make rounding look huge)."""
    if got.shape != expected.shape:
        return OutputCheck(name, float("inf"), float("inf"), False)
    got64, expected64 = got.astype(np.float64), expected.astype(np.float64)
    abs_error = float(np.max(np.abs(got64 - expected64))) if got.size else 0.0
    scale = max(magnitude(expected), scale, 1e-6)
    rel_error = abs_error / scale
    return OutputCheck(name, abs_error, rel_error, bool(np.isfinite(rel_error) and rel_error <= tolerance))


def magnitude(values: NDArray[Any]) -> float:
    """The largest absolute value, 0 for an empty tensor."""
    return float(np.max(np.abs(values.astype(np.float64)))) if values.size else 0.0


def output_scales(expected: list[Arrays], output_keys: Sequence[str]) -> dict[str, float]:
    """Each output's largest magnitude over all input sets: the scale its errors are measured against."""
    return {key: max((magnitude(np.asarray(wanted[key])) for wanted in expected), default=0.0) for key in output_keys}


def compare_outputs(
    got: Arrays,
    wanted: Arrays,
    output_keys: Sequence[str],
    tolerance: float,
    selections: SelectionHeads | None = None,
    feeds: Arrays | None = None,
    scales: dict[str, float] | None = None,
) -> list[OutputCheck]:
    """Every output of `got` against `wanted`; outputs chosen by a selection op with ties in mind, on the
    tensors in `feeds` that fed the selection where given; `scales` from `output_scales`."""
    checks = []
    for key in output_keys:
        if selections is not None and key in selections:
            checks.extend(selections.check(key, got[key], wanted, feeds or {}, tolerance))
        else:
            checks.append(compare(key, got[key], wanted[key], tolerance, (scales or {}).get(key, 0.0)))
    return checks


def check_graph_faithfulness(
    graph_reference: Callable[[Arrays], Arrays],
    expected: list[Arrays],
    input_sets: list[Arrays],
    output_keys: Sequence[str],
    selections: SelectionHeads | None = None,
) -> tuple[OutputCheck, ...]:
    """The first of a check's two questions, for a source another engine runs (a TF.js model): the graph
    convbot built, run in TensorFlow, against the source's own outputs `expected`, at the cross-runtime
    tolerance. Worst per output."""
    checks = []
    scales = output_scales(expected, output_keys)
    for inputs, wanted in zip(input_sets, expected, strict=True):
        got = graph_reference(inputs)
        checks.extend(compare_outputs(got, wanted, output_keys, CROSS_RUNTIME_TOLERANCE, selections, got, scales))
    return _worst(checks)


def _worst(checks: list[OutputCheck]) -> tuple[OutputCheck, ...]:
    """One entry per output: the worst over all input sets."""
    worst: dict[str, OutputCheck] = {}
    for check in checks:
        if check.name not in worst or check.max_rel_error > worst[check.name].max_rel_error:
            worst[check.name] = check
    return tuple(worst.values())


def verify_artifacts(
    artifacts: Sequence[Artifact],
    output_keys: Sequence[str],
    input_sets: list[Arrays],
    reference: Callable[[Arrays], Arrays],
    tolerance_floor: float = 0.0,
    selections: SelectionHeads | None = None,
    source_graph: SourceGraph | None = None,
    expected: list[Arrays] | None = None,
    graph_faithful: bool = True,
) -> tuple[ArtifactCheck, ...]:
    """Run every artifact and the source on each input set and compare every output.

    `tolerance_floor` raises every tolerance to at least that (see CROSS_RUNTIME_TOLERANCE).
    Outputs in `selections` are compared with ties in mind (converter/selection.py).
    A failed artifact is explained (culprit, advice); against `source_graph` node by node when given,
    and, when the graph convbot built is faithful, a float32 departure that is one op's kernel in the
    artifact's runtime passes with a runtime note (converter/runtime_note.py).
    `expected`: the reference's outputs on `input_sets` when already computed.
    """
    expected = expected if expected is not None else [reference(inputs) for inputs in input_sets]
    return tuple(
        _check_artifact(a, output_keys, input_sets, expected, tolerance_floor, selections, source_graph, graph_faithful)
        for a in artifacts
    )


def _check_artifact(
    artifact: Artifact,
    output_keys: Sequence[str],
    input_sets: list[Arrays],
    expected: list[Arrays],
    tolerance_floor: float,
    selections: SelectionHeads | None = None,
    source_graph: SourceGraph | None = None,
    graph_faithful: bool = True,
) -> ArtifactCheck:
    tolerance = tolerance_for(artifact.quantization, tolerance_floor)
    if artifact.target is Target.TFLITE:
        runner = _tflite_runner
    elif artifact.target.is_tensorflow:
        runner = _tensorflow_runner
    else:
        runner = _tfjs_runner
    try:
        run, inputs_manifest, outputs_manifest = runner(artifact, output_keys)
        checks = []
        checked_on: list[Arrays] = []  # the input set of each check
        scales = output_scales(expected, output_keys)
        for inputs, wanted in zip(input_sets, expected, strict=True):
            got = run(inputs)
            missing = [key for key in output_keys if key not in got]
            if missing:
                message = f"the artifact has no output '{missing[0]}'"
                return ArtifactCheck(artifact.target, artifact.quantization, ERROR, message, tolerance)
            feeds = artifact_tensors(artifact, selections.feeds(), inputs) if selections else {}
            checks.extend(compare_outputs(got, wanted, output_keys, tolerance, selections, feeds, scales))
            checked_on.extend([inputs] * (len(checks) - len(checked_on)))
    except _NotRun as reason:
        return ArtifactCheck(artifact.target, artifact.quantization, NOT_RUN, str(reason), tolerance)
    except _RunFailed as failure:
        return ArtifactCheck(artifact.target, artifact.quantization, ERROR, str(failure), tolerance)
    outputs = _worst(checks)
    failed = [check.name for check in outputs if not check.passed]
    status = FAILED if failed else PASSED
    message = (
        f"outputs off by more than {tolerance:g} of their scale: {', '.join(failed)}" if failed else tie_message(checks)
    )
    verdict = ArtifactCheck(
        artifact.target, artifact.quantization, status, message, tolerance, outputs, inputs_manifest, outputs_manifest
    )
    verdict = replace(verdict, engine=getattr(run, "engine", ""))  # the TF.js runner says which backend ran it
    if status != FAILED:
        return verdict
    from converter.culprit import explain_failure
    from converter.runtime_note import with_runtime_note

    worst = max(range(len(checks)), key=lambda i: checks[i].max_rel_error)
    explained, departure = explain_failure(artifact, verdict, checked_on[worst], source_graph)
    return with_runtime_note(explained, departure, graph_faithful)


class _NotRun(Exception):
    """The artifact could not be run here (no runtime); not a verdict on the artifact."""


class _RunFailed(Exception):
    """The artifact failed to load or run: a verdict on the artifact."""


Runner = tuple[Callable[[Arrays], Arrays], tuple[TensorEntry, ...], tuple[TensorEntry, ...]]


def _tflite_runner(artifact: Artifact, output_keys: Sequence[str]) -> Runner:
    import tensorflow as tf

    try:
        interpreter = tf.lite.Interpreter(model_path=artifact.path)
        signatures = interpreter.get_signature_list()
        runner = interpreter.get_signature_runner(
            fmt.SERVING_SIGNATURE if fmt.SERVING_SIGNATURE in signatures else None
        )
    except (ValueError, RuntimeError) as error:
        raise _RunFailed(f"the TFLite interpreter cannot load it: {_first_line(error)}") from None

    def entries(kind: str) -> tuple[TensorEntry, ...]:
        details = runner.get_input_details() if kind == "inputs" else runner.get_output_details()
        return tuple(
            TensorEntry(
                key,
                d["name"],
                np.dtype(d["dtype"]).name,
                tuple(int(x) for x in d["shape_signature"]),
                int(d["index"]),
                *tensor_quantization(d),
            )
            for key, d in details.items()
        )

    def run(inputs: Arrays) -> Arrays:
        try:
            return run_signature(interpreter, runner, inputs)
        except (ValueError, RuntimeError) as error:
            raise _RunFailed(f"the TFLite interpreter failed: {_first_line(error)}") from None

    return run, entries("inputs"), entries("outputs")


def _tfjs_runner(artifact: Artifact, output_keys: Sequence[str]) -> Runner:
    from converter.tfjs_runtime import TfjsRunError, TfjsUnavailable, run_tfjs_model

    layers = artifact.target is Target.TFJS_LAYERS
    backends: list[str] = []  # per input set: the TF.js backend that ran it

    def run(inputs: Arrays) -> Arrays:
        try:
            # One input goes in positionally, as web code calls model.predict(tensor): a leftover
            # extra input (a PlaceholderWithDefault) then fails here as it would in the browser.
            result = run_tfjs_model(
                Path(artifact.path),
                inputs,
                None if layers else list(output_keys),
                kind="layers" if layers else "graph",
                positional=len(inputs) == 1,
            )
        except TfjsUnavailable as missing:
            raise _NotRun(str(missing)) from None
        except TfjsRunError as error:
            raise _RunFailed(f"TF.js failed at {error.stage}: {_first_line(error)}") from None
        backends.append(result.backend)
        run.engine = "+".join(dict.fromkeys(backends))  # type: ignore[attr-defined]
        if layers:  # a layers model's outputs come in order, unnamed
            return dict(zip(output_keys, result.outputs.values(), strict=False))
        return result.outputs

    inputs_manifest, outputs_manifest = ((), ()) if layers else tfjs_manifest(Path(artifact.path))
    return run, inputs_manifest, outputs_manifest


def _tensorflow_runner(artifact: Artifact, output_keys: Sequence[str]) -> Runner:
    """A frozen graph or a zipped SavedModel, loaded and run by TensorFlow as its users will."""
    import tempfile
    import zipfile

    path = Path(artifact.path)
    try:
        if artifact.target is Target.FROZEN_GRAPH:
            reference = reference_runner(ModelFormat.FROZEN_GRAPH, path, output_keys)
        else:
            with tempfile.TemporaryDirectory(prefix="convbot-verify-") as unpacked:
                with zipfile.ZipFile(path) as archive:
                    archive.extractall(unpacked)  # our own zip, written by this conversion
                saved_model_dir = next(Path(unpacked).rglob(fmt.SAVED_MODEL_PB)).parent
                reference = reference_runner(ModelFormat.SAVED_MODEL, saved_model_dir, output_keys)
    except Exception as error:  # TensorFlow raises many types for a model it cannot load
        raise _RunFailed(f"TensorFlow cannot load it: {_first_line(error)}") from None

    def run(inputs: Arrays) -> Arrays:
        try:
            return reference(inputs)
        except Exception as error:
            raise _RunFailed(f"TensorFlow failed to run it: {_first_line(error)}") from None

    return run, (), ()


def tfjs_manifest(model_dir: Path) -> tuple[tuple[TensorEntry, ...], tuple[TensorEntry, ...]]:
    """The names to pass to TF.js `execute`: signature keys where model.json has them, else placeholders."""
    import json

    model = json.loads((model_dir / fmt.TFJS_MODEL_JSON).read_text(encoding="utf-8"))
    signature = model.get("signature") or {}
    nodes = (model.get("modelTopology") or {}).get("node") or []

    def entries(section: dict[str, Any]) -> tuple[TensorEntry, ...]:
        return tuple(
            TensorEntry(
                key,
                str(info.get("name", key)),
                str(info.get("dtype", "")).removeprefix("DT_").lower(),
                tuple(int(d.get("size", -1)) for d in (info.get("tensorShape") or {}).get("dim", [])),
            )
            for key, info in section.items()
        )

    inputs = entries(signature.get("inputs") or {})
    if not inputs:
        inputs = tuple(TensorEntry(n["name"], n["name"], "", ()) for n in nodes if n.get("op") == "Placeholder")
    return inputs, entries(signature.get("outputs") or {})


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:300] if text else type(error).__name__


def reference_runner(
    model_format: ModelFormat,
    model_path: Path,
    output_keys: Sequence[str],
    signature_key: str = fmt.SERVING_SIGNATURE,
    plain: bool = False,
) -> Callable[[Arrays], Arrays]:
    """A function computing the source model's outputs with TensorFlow.

    `plain`, for a graph: TensorFlow's own kernels, node by node, without the graph optimizer (grappler), which
    would fuse and fold the graph the first time it runs. As a reference it is the graph's meaning itself, and its
    first run takes 0.09 s instead of 0.3 s on a MobileNet. Artifacts of type pb run as their users run them."""
    import tensorflow as tf

    if model_format.is_graph:
        from converter.graph_inspect import read_graph_def

        graph_def = tf.compat.v1.GraphDef()
        graph_def.ParseFromString(
            read_graph_def(model_path, text=model_format is ModelFormat.FROZEN_GRAPH_TEXT).SerializeToString()
        )
        graph = tf.Graph()
        with graph.as_default():
            tf.graph_util.import_graph_def(graph_def, name="")
        config = tf.compat.v1.ConfigProto()
        config.graph_options.rewrite_options.disable_meta_optimizer = plain
        session = tf.compat.v1.Session(graph=graph, config=config)

        def run_graph(inputs: Arrays) -> Arrays:
            values = session.run([tensor_name(k) for k in output_keys], {f"{k}:0": v for k, v in inputs.items()})
            return dict(zip(output_keys, values, strict=True))

        return run_graph
    if model_format is ModelFormat.SAVED_MODEL:
        function = tf.saved_model.load(str(model_path), tags=[fmt.SERVING_TAG]).signatures[signature_key]

        def run_saved_model(inputs: Arrays) -> Arrays:
            result = function(**{k: tf.constant(v) for k, v in inputs.items()})
            return {k: np.asarray(result[k]) for k in output_keys}

        return run_saved_model
    from converter.serving_export import load_keras_model_safely

    model = load_keras_model_safely(model_path)
    names = list(getattr(model, "output_names", []) or output_keys)

    def run_keras(inputs: Arrays) -> Arrays:
        values = list(inputs.values())
        result = model(values if len(values) > 1 else values[0], training=False)
        results = list(result) if isinstance(result, (list, tuple)) else [result]
        by_name = result if isinstance(result, dict) else dict(zip(names, results, strict=False))
        return {k: np.asarray(by_name[k]) for k in output_keys}

    return run_keras

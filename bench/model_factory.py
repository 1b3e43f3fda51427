"""Build tiny, real TensorFlow models for the tests and the benches to inspect and convert.

Every ``write_*`` function takes destination path(s), writes one model there and
returns a :class:`ModelFacts` whose ``path`` is what was written, together with
the facts a test can check against: input/output names, shapes, signature keys.
All models are a few KB and deterministic (fixed seeds, numpy-made weights).

TensorFlow is imported lazily inside the functions, so importing this module is
cheap.  Run ``python -m bench.model_factory OUTDIR`` to write every model into
OUTDIR and print a table of files and facts.

Names used below:

* frozen graphs (``.pb``/``.pbtxt``): ``inputs``/``outputs`` are node names
  (tensor ``<name>:0``);
* SavedModels: ``inputs``/``outputs`` are the keys of the serving signature;
* Keras files: ``inputs``/``outputs`` are the model's input/output layer names.
"""

from __future__ import annotations

import os
import shutil
import sys
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import keras
    import numpy as np
    from numpy.typing import NDArray
    from tensorflow.core.framework.graph_pb2 import GraphDef

SEED = 0
Shape = tuple[int | None, ...]
PathLike = str | os.PathLike[str]

# Keras classifier: Input (8, 8, 3) "image" -> ... -> Dense(4) softmax "probs".
CLASSIFIER_INPUT = "image"
CLASSIFIER_OUTPUT = "probs"
CLASSIFIER_INPUT_SHAPE: Shape = (None, 8, 8, 3)
CLASSIFIER_CLASSES = 4

# TF1 graph
TF1_INPUT_SHAPE: Shape = (None, 16, 16, 3)
TF1_CLASSES = 5

# TF1 checkpoint: x (None, 8, 8, 3) -> conv -> pool -> dense "logits" -> Softmax "probs".
CHECKPOINT_INPUT = "x"
CHECKPOINT_OUTPUT = "probs"
CHECKPOINT_IMAGE = (8, 8, 3)
CHECKPOINT_INPUT_SHAPE: Shape = (None, *CHECKPOINT_IMAGE)
CHECKPOINT_CLASSES = 3
CHECKPOINT_STEPS = 2  # training steps before saving: the files are named model.ckpt-2.*

# Detectors (frozen graphs): a CenterNet-style TopK head and an SSD-style NMS head.
DETECTOR_SIZE, DETECTOR_CLASSES, DETECTOR_K = 16, 2, 20
SSD_SIZE, SSD_MAX = 8, 10

# Pose-like multi-head graph (PoseNet's four outputs, output stride 4 here).
POSE_INPUT_SHAPE: Shape = (1, 33, 33, 3)
POSE_HEADS: dict[str, int] = {
    "heatmap": 17,
    "offset_2": 34,
    "displacement_fwd_2": 32,
    "displacement_bwd_2": 32,
}

LAMBDA_SAFE_MODE_NOTE = (
    "Keras 3.15 keras.saving.load_model(..., safe_mode=True) (the default) raises "
    "ValueError 'Requested the deserialization of a `Lambda` layer whose `function` "
    "is a Python lambda...' for BOTH the .keras and the legacy .h5 file; "
    "safe_mode=False loads both."
)


@dataclass(frozen=True)
class ModelFacts:
    """What a test may expect of a written model."""

    path: Path
    kind: str
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    input_shapes: Mapping[str, Shape] = field(default_factory=dict)
    output_shapes: Mapping[str, Shape] = field(default_factory=dict)
    # Placeholders with a default value a person would leave alone (frozen graphs).
    optional_inputs: tuple[str, ...] = ()
    # Other placeholders in the graph that are not model inputs (e.g. save/filename).
    other_placeholders: tuple[str, ...] = ()
    # Sink nodes (consumed by nothing) that are NOT model outputs (frozen graphs).
    leftover_sinks: tuple[str, ...] = ()
    # SavedModel: all signature keys; the serving one is "serving_default".
    signature_keys: tuple[str, ...] = ()
    # Further files written by the same call (e.g. the .pbtxt beside the .pb).
    extra_paths: tuple[Path, ...] = ()
    notes: str = ""


# --------------------------------------------------------------------------- helpers


def _prepare(path: PathLike) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    return p


def _prepare_dir(path: PathLike) -> Path:
    p = Path(path)
    if p.exists():
        shutil.rmtree(p)
    p.parent.mkdir(parents=True, exist_ok=True)
    return p


def _rng(offset: int = 0) -> np.random.RandomState:
    import numpy as np

    return np.random.RandomState(SEED + offset)


def _shape(dims: Iterable[Any]) -> Shape:
    return tuple(None if d is None or d == -1 else int(d) for d in dims)


def graph_sinks(graph_def: GraphDef) -> list[str]:
    """Names of nodes that no other node consumes (by data or control edge)."""
    consumed = {inp.lstrip("^").split(":")[0] for node in graph_def.node for inp in node.input}
    return [node.name for node in graph_def.node if node.name not in consumed]


def _write_graph_def(graph_def: GraphDef, pb_path: Path, pbtxt_path: Path | None = None) -> None:
    from google.protobuf import text_format

    pb_path.write_bytes(graph_def.SerializeToString(deterministic=True))
    if pbtxt_path is not None:
        pbtxt_path.write_text(text_format.MessageToString(graph_def))


# ------------------------------------------------------------------ Keras 3 classifier


def keras_classifier() -> keras.Model:
    """Tiny Keras 3 functional classifier.

    image (None, 8, 8, 3) -> Conv2D(4) -> BatchNormalization -> ReLU
    -> GlobalAveragePooling2D -> Dense(4, softmax) "probs".
    BatchNormalization gets non-trivial moving statistics so folding it matters.
    """
    import keras

    model: keras.Model = _build_classifier(keras)
    return model


def _build_classifier(keras_module: Any) -> Any:
    """The classifier built with ``keras_module``: Keras 3 (``keras``) or Keras 2 (``tf_keras``), same layers."""
    keras_module.utils.set_random_seed(SEED)
    inp = keras_module.Input(shape=CLASSIFIER_INPUT_SHAPE[1:], name=CLASSIFIER_INPUT)
    x = keras_module.layers.Conv2D(4, 3, padding="same", name="conv")(inp)
    x = keras_module.layers.BatchNormalization(name="bn")(x)
    x = keras_module.layers.ReLU(name="relu")(x)
    x = keras_module.layers.GlobalAveragePooling2D(name="gap")(x)
    out = keras_module.layers.Dense(CLASSIFIER_CLASSES, activation="softmax", name=CLASSIFIER_OUTPUT)(x)
    model = keras_module.Model(inp, out, name="tiny_classifier")
    _set_classifier_weights(model.get_layer("conv"), model.get_layer("bn"), model.get_layer("probs"))
    return model


def _set_classifier_weights(conv: Any, bn: Any, dense: Any) -> None:
    """Same numpy-made weights for the Keras 3 and the tf_keras classifier."""
    import numpy as np

    rng = _rng(1)
    conv.set_weights(
        [
            rng.normal(0.0, 0.5, (3, 3, 3, 4)).astype(np.float32),
            rng.normal(0.0, 0.1, (4,)).astype(np.float32),
        ]
    )
    bn.set_weights(
        [
            rng.uniform(0.5, 1.5, (4,)).astype(np.float32),  # gamma
            rng.normal(0.0, 0.1, (4,)).astype(np.float32),  # beta
            rng.normal(0.0, 0.2, (4,)).astype(np.float32),  # moving_mean
            rng.uniform(0.5, 2.0, (4,)).astype(np.float32),  # moving_variance
        ]
    )
    dense.set_weights(
        [
            rng.normal(0.0, 0.5, (4, CLASSIFIER_CLASSES)).astype(np.float32),
            rng.normal(0.0, 0.1, (CLASSIFIER_CLASSES,)).astype(np.float32),
        ]
    )


def classifier_sample(batch: int = 2) -> NDArray[np.float32]:
    """A deterministic input batch for the classifier."""
    import numpy as np

    return _rng(7).uniform(0.0, 1.0, (batch, 8, 8, 3)).astype(np.float32)


def _classifier_keras_facts(path: Path, kind: str, notes: str = "") -> ModelFacts:
    return ModelFacts(
        path=path,
        kind=kind,
        inputs=(CLASSIFIER_INPUT,),
        outputs=(CLASSIFIER_OUTPUT,),
        input_shapes={CLASSIFIER_INPUT: CLASSIFIER_INPUT_SHAPE},
        output_shapes={CLASSIFIER_OUTPUT: (None, CLASSIFIER_CLASSES)},
        notes=notes,
    )


def write_saved_model(dest: PathLike, model: keras.Model | None = None) -> ModelFacts:
    """SavedModel directory via Keras 3 ``model.export(dest)``.

    Keras 3 writes two signatures, "serve" and "serving_default" (same function).
    The input key is the Input layer's name ("image"); the single, unnamed output
    gets the key "output_0" -- NOT the Dense layer's name "probs".
    """
    model = model if model is not None else keras_classifier()
    return _export_saved_model(
        model, dest, notes="Keras 3 model.export(); output key is 'output_0', not the layer name 'probs'"
    )


def _export_saved_model(model: keras.Model, dest: PathLike, notes: str = "") -> ModelFacts:
    """``model.export(dest)`` and the facts of its serving signature."""
    import tensorflow as tf

    out = _prepare_dir(dest)
    model.export(str(out), verbose=False)
    loaded = tf.saved_model.load(str(out))
    sig = loaded.signatures["serving_default"]
    in_specs: dict[str, Any] = sig.structured_input_signature[1]
    out_specs: dict[str, Any] = sig.structured_outputs
    return ModelFacts(
        path=out,
        kind="saved_model",
        inputs=tuple(sorted(in_specs)),
        outputs=tuple(sorted(out_specs)),
        input_shapes={k: _shape(v.shape) for k, v in in_specs.items()},
        output_shapes={k: _shape(v.shape) for k, v in out_specs.items()},
        signature_keys=tuple(sorted(loaded.signatures.keys())),
        notes=notes,
    )


def write_frozen_from_keras(path: PathLike, model: keras.Model | None = None) -> ModelFacts:
    """Frozen GraphDef (.pb) made the usual way: tf.function + convert_variables_to_constants_v2.

    The input node is the TensorSpec's name ("image"), the output node is "Identity"
    (the Softmax is e.g. "tiny_classifier_1/probs_1/Softmax").  The graph also holds
    a "NoOp" node; it is not a sink, because "Identity" has a control input "^NoOp".
    """
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    model = model if model is not None else keras_classifier()
    out = _prepare(path)
    func = tf.function(lambda x: model(x, training=False))
    concrete = func.get_concrete_function(tf.TensorSpec(CLASSIFIER_INPUT_SHAPE, tf.float32, name=CLASSIFIER_INPUT))
    frozen = convert_variables_to_constants_v2(concrete)
    graph_def = frozen.graph.as_graph_def()
    _write_graph_def(graph_def, out)
    inputs = tuple(t.op.name for t in frozen.inputs if t.dtype != tf.resource)
    outputs = tuple(t.op.name for t in frozen.outputs)
    leftovers = tuple(n for n in graph_sinks(graph_def) if n not in outputs)
    return ModelFacts(
        path=out,
        kind="frozen_pb",
        inputs=inputs,
        outputs=outputs,
        input_shapes={t.op.name: _shape(t.shape) for t in frozen.inputs if t.dtype != tf.resource},
        output_shapes={t.op.name: _shape(t.shape) for t in frozen.outputs},
        leftover_sinks=leftovers,
        notes="tf.function(lambda x: model(x)) + convert_variables_to_constants_v2",
    )


def write_h5(path: PathLike, model: keras.Model | None = None) -> ModelFacts:
    """Legacy HDF5 full model via Keras 3 ``model.save("x.h5")`` (keras_version 3.x)."""
    model = model if model is not None else keras_classifier()
    out = _prepare(path)
    if out.suffix not in (".h5", ".hdf5"):
        raise ValueError(f"HDF5 path must end with .h5 or .hdf5: {out}")
    model.save(str(out))
    return _classifier_keras_facts(out, "keras_h5", "Keras 3 legacy HDF5 (attrs keras_version=3.x)")


def write_keras_v3(path: PathLike, model: keras.Model | None = None) -> ModelFacts:
    """Keras v3 zip via ``model.save("x.keras")``."""
    model = model if model is not None else keras_classifier()
    out = _prepare(path)
    if out.suffix != ".keras":
        raise ValueError(f"Keras v3 path must end with .keras: {out}")
    model.save(str(out))
    return _classifier_keras_facts(out, "keras_v3")


def write_weights_only_h5(path: PathLike, model: keras.Model | None = None) -> ModelFacts:
    """Weights only (no architecture) via Keras 3 ``model.save_weights("x.weights.h5")``.

    Keras 3 insists on the ".weights.h5" suffix.  The file has top-level groups
    "layers" and "vars" and no "model_config" attribute.
    """
    model = model if model is not None else keras_classifier()
    out = _prepare(path)
    if not out.name.endswith(".weights.h5"):
        raise ValueError(f"Keras 3 weights path must end with .weights.h5: {out}")
    model.save_weights(str(out))
    return _classifier_keras_facts(out, "keras_weights_h5", "weights only: no architecture")


def tf_keras_classifier() -> Any:
    """The same classifier (same weights) built with tf_keras (Keras 2)."""
    import tf_keras

    return _build_classifier(tf_keras)


def write_tf_keras_weights_h5(path: PathLike) -> ModelFacts:
    """Keras-2-style weights-only HDF5 via tf_keras ``model.save_weights("w.h5")``.

    Root attrs: layer_names, backend, keras_version="2.19.0"; one group per layer;
    no "model_config" attribute.
    """
    out = _prepare(path)
    tf_keras_classifier().save_weights(str(out))
    return _classifier_keras_facts(out, "tf_keras_weights_h5", "Keras 2 (tf_keras) weights only")


def write_tf_keras_h5(path: PathLike) -> ModelFacts:
    """Keras-2-style full model HDF5 via tf_keras ``model.save("m.h5")`` (keras_version 2.19.0)."""
    out = _prepare(path)
    tf_keras_classifier().save(str(out), save_format="h5")
    return _classifier_keras_facts(out, "tf_keras_h5", "Keras 2 (tf_keras) full model HDF5")


def write_keras_with_lambda(path_keras: PathLike, path_h5: PathLike) -> ModelFacts:
    """A model with ``Lambda(lambda x: x * 2)`` saved as .keras and as legacy .h5.

    values (None, 4) -> Dense(3) "dense" -> Lambda "double".
    Loading either with safe_mode=True (the default) raises ValueError in Keras 3.15;
    see LAMBDA_SAFE_MODE_NOTE.  ``path`` is the .keras file, ``extra_paths`` the .h5.
    """
    import keras
    import numpy as np

    keras.utils.set_random_seed(SEED)
    inp = keras.Input(shape=(4,), name="values")
    dense = keras.layers.Dense(3, name="dense")
    x = dense(inp)
    out = keras.layers.Lambda(lambda t: t * 2, name="double")(x)
    model = keras.Model(inp, out, name="with_lambda")
    rng = _rng(2)
    dense.set_weights([rng.normal(0, 0.5, (4, 3)).astype(np.float32), np.zeros(3, np.float32)])
    pk, ph = _prepare(path_keras), _prepare(path_h5)
    model.save(str(pk))
    model.save(str(ph))
    return ModelFacts(
        path=pk,
        kind="keras_v3_lambda",
        inputs=("values",),
        outputs=("double",),
        input_shapes={"values": (None, 4)},
        output_shapes={"double": (None, 3)},
        extra_paths=(ph,),
        notes=LAMBDA_SAFE_MODE_NOTE,
    )


def write_multi_output_keras(dest: PathLike) -> ModelFacts:
    """Keras model with two named outputs (dict outputs), exported as a SavedModel.

    features (None, 6) -> Dense(8, relu) -> {"class_probs": (None, 3) softmax,
    "score": (None, 1)}.  With dict outputs the signature output keys are the dict
    keys; with list outputs Keras would use "output_0", "output_1".
    """
    import keras

    keras.utils.set_random_seed(SEED)
    inp = keras.Input(shape=(6,), name="features")
    h = keras.layers.Dense(8, activation="relu", name="hidden")(inp)
    probs = keras.layers.Dense(3, activation="softmax", name="class_probs")(h)
    score = keras.layers.Dense(1, name="score")(h)
    model = keras.Model(inp, {"class_probs": probs, "score": score}, name="two_heads")
    return _export_saved_model(model, dest)


# ------------------------------------------------------------------------ TF1 graphs


def _v1_var(name: str, value: NDArray[np.float32], trainable: bool = True) -> Any:
    """A classic ref variable (VariableV2), as TF1 code made them."""
    import tensorflow as tf

    return tf.compat.v1.get_variable(name, initializer=value, use_resource=False, trainable=trainable)


def _freeze_v1(graph: Any, output_node_names: Sequence[str]) -> GraphDef:
    import tensorflow as tf

    v1 = tf.compat.v1
    with graph.as_default():
        init = v1.global_variables_initializer()
    with v1.Session(graph=graph) as sess:
        sess.run(init)
        return v1.graph_util.convert_variables_to_constants(sess, graph.as_graph_def(), list(output_node_names))


def write_tf1_graph(pb_path: PathLike, pbtxt_path: PathLike) -> ModelFacts:
    """Classic TF1 training graph, frozen with its training leftovers still attached.

    Main path: input Placeholder (None, 16, 16, 3) -> Identity "checked_input"
    (control dependency on Assert "input_check/Assert") -> conv1 (Conv2D+BiasAdd)
    -> unfused batch norm (tf.nn.moments, v1 cond on ``is_training`` -> Switch/Merge,
    tf.nn.batch_normalization) -> Relu -> tf.nn.dropout(rate=1-keep_prob)
    -> Mean -> MatMul -> "logits" (BiasAdd) -> "probabilities" (Softmax).

    Leftovers kept alive by listing them as freeze outputs: MergeSummary of a
    ScalarSummary of the loss, tf.gradients of the loss ("gradients/..."), a bare
    Assert "keep_prob_check/Assert" and the Saver's save subgraph
    ("save/control_dependency", which keeps save/SaveV2 and the string
    PlaceholderWithDefault nodes "save/filename" and "save/Const").

    "save/restore_all" is deliberately NOT kept: its Assign ops would point at the
    frozen Consts and the GraphDef would no longer import ("Input 0 of node
    save/Assign was passed float from ... incompatible with expected float_ref").
    """
    import numpy as np
    import tensorflow as tf

    v1 = tf.compat.v1
    pb, pbtxt = _prepare(pb_path), _prepare(pbtxt_path)
    rng = _rng(3)
    cf2_was_enabled = v1.control_flow_v2_enabled()
    v1.disable_control_flow_v2()  # v1 cond -> Switch/Merge, as in real TF1 graphs
    try:
        graph = tf.Graph()
        with graph.as_default():
            v1.set_random_seed(SEED)
            images = v1.placeholder(tf.float32, TF1_INPUT_SHAPE, name="input")
            is_training = v1.placeholder_with_default(False, shape=[], name="is_training")
            keep_prob = v1.placeholder_with_default(1.0, shape=[], name="keep_prob")

            input_check = tf.debugging.Assert(
                tf.reduce_all(tf.math.is_finite(images)), [tf.shape(images)], name="input_check"
            )
            with tf.control_dependencies([input_check]):
                x = tf.identity(images, name="checked_input")

            with v1.variable_scope("conv1"):
                w = _v1_var("weights", rng.normal(0, 0.3, (3, 3, 3, 8)).astype(np.float32))
                b = _v1_var("biases", rng.normal(0, 0.1, (8,)).astype(np.float32))
                x = tf.nn.bias_add(tf.nn.conv2d(x, w, [1, 1, 1, 1], "SAME"), b)

            with v1.variable_scope("bn1"):
                gamma = _v1_var("gamma", rng.uniform(0.5, 1.5, (8,)).astype(np.float32))
                beta = _v1_var("beta", rng.normal(0, 0.1, (8,)).astype(np.float32))
                moving_mean = _v1_var("moving_mean", rng.normal(0, 0.1, (8,)).astype(np.float32), trainable=False)
                moving_var = _v1_var("moving_variance", rng.uniform(0.5, 1.5, (8,)).astype(np.float32), trainable=False)
                batch_mean, batch_var = tf.nn.moments(x, [0, 1, 2], name="moments")
                mean, var = v1.cond(
                    is_training,
                    lambda: (batch_mean, batch_var),
                    lambda: (tf.identity(moving_mean), tf.identity(moving_var)),
                    name="cond",
                )
                x = tf.nn.batch_normalization(x, mean, var, beta, gamma, 1e-3, name="batchnorm")

            x = tf.nn.relu(x, name="relu1")
            x = tf.nn.dropout(x, rate=1.0 - keep_prob, name="dropout")
            x = tf.reduce_mean(x, axis=[1, 2], name="pool")
            with v1.variable_scope("fc"):
                fw = _v1_var("weights", rng.normal(0, 0.5, (8, TF1_CLASSES)).astype(np.float32))
                fb = _v1_var("biases", rng.normal(0, 0.1, (TF1_CLASSES,)).astype(np.float32))
            logits = tf.nn.bias_add(tf.matmul(x, fw), fb, name="logits")
            probabilities = tf.nn.softmax(logits, name="probabilities")

            # --- training-only leftovers (no labels placeholder on purpose) ---
            loss = tf.add(tf.reduce_mean(tf.square(logits)), 1e-4 * tf.nn.l2_loss(w), name="loss")
            v1.summary.scalar("loss", loss)
            merged = v1.summary.merge_all()
            grads = tf.gradients(loss, [w, fw])
            keep_prob_check = tf.debugging.Assert(keep_prob > 0.0, ["keep_prob must be > 0"], name="keep_prob_check")
            saver = v1.train.Saver()
            save_tensor = saver.as_saver_def().save_tensor_name.split(":")[0]
    finally:
        if cf2_was_enabled:
            v1.enable_control_flow_v2()

    leftovers = (merged.op.name, *(g.op.name for g in grads), keep_prob_check.name, save_tensor)
    graph_def = _freeze_v1(graph, [probabilities.op.name, *leftovers])
    _write_graph_def(graph_def, pb, pbtxt)
    return ModelFacts(
        path=pb,
        kind="frozen_pb",
        inputs=("input",),
        outputs=(probabilities.op.name,),
        input_shapes={"input": TF1_INPUT_SHAPE, "is_training": (), "keep_prob": ()},
        output_shapes={probabilities.op.name: (None, TF1_CLASSES)},
        optional_inputs=("is_training", "keep_prob"),
        other_placeholders=tuple(
            sorted(
                n.name
                for n in graph_def.node
                if n.op in ("Placeholder", "PlaceholderWithDefault") and n.name.startswith("save/")
            )
        ),
        leftover_sinks=tuple(sorted(leftovers)),
        extra_paths=(pbtxt,),
        notes=(
            "'logits' (BiasAdd) feeds Softmax so it is consumed; v1 control flow "
            "(Switch/Merge) from the is_training cond; RandomUniform from dropout; "
            "save/filename and save/Const are string PlaceholderWithDefault"
        ),
    )


def write_multihead_graph(pb_path: PathLike) -> ModelFacts:
    """Pose-like frozen TF1 graph with PoseNet's four output names.

    image (1, 33, 33, 3) -> conv 3x3/2 + Relu6 -> depthwise 3x3/2 + pointwise 1x1
    + Relu6 (9x9x16) -> four 1x1-conv heads: "heatmap" (Sigmoid of BiasAdd),
    "offset_2", "displacement_fwd_2", "displacement_bwd_2" (BiasAdd).
    """
    import numpy as np
    import tensorflow as tf

    v1 = tf.compat.v1
    pb = _prepare(pb_path)
    rng = _rng(4)
    graph = tf.Graph()
    with graph.as_default():
        image = v1.placeholder(tf.float32, POSE_INPUT_SHAPE, name="image")
        with v1.variable_scope("trunk"):
            w1 = _v1_var("conv1/weights", rng.normal(0, 0.3, (3, 3, 3, 8)).astype(np.float32))
            b1 = _v1_var("conv1/biases", rng.normal(0, 0.1, (8,)).astype(np.float32))
            x = tf.nn.relu6(tf.nn.bias_add(tf.nn.conv2d(image, w1, [1, 2, 2, 1], "SAME"), b1))
            dw = _v1_var("conv2_dw/depthwise_weights", rng.normal(0, 0.3, (3, 3, 8, 1)).astype(np.float32))
            x = tf.nn.depthwise_conv2d(x, dw, [1, 2, 2, 1], "SAME")
            pw = _v1_var("conv2_pw/weights", rng.normal(0, 0.3, (1, 1, 8, 16)).astype(np.float32))
            b2 = _v1_var("conv2_pw/biases", rng.normal(0, 0.1, (16,)).astype(np.float32))
            trunk = tf.nn.relu6(tf.nn.bias_add(tf.nn.conv2d(x, pw, [1, 1, 1, 1], "SAME"), b2))
        heads: dict[str, Any] = {}
        for name, channels in POSE_HEADS.items():
            with v1.variable_scope(f"{name}_head"):
                hw = _v1_var("weights", rng.normal(0, 0.3, (1, 1, 16, channels)).astype(np.float32))
                hb = _v1_var("biases", rng.normal(0, 0.1, (channels,)).astype(np.float32))
                conv = tf.nn.conv2d(trunk, hw, [1, 1, 1, 1], "SAME")
            if name == "heatmap":
                heads[name] = tf.sigmoid(tf.nn.bias_add(conv, hb), name=name)
            else:
                heads[name] = tf.nn.bias_add(conv, hb, name=name)
    graph_def = _freeze_v1(graph, [t.op.name for t in heads.values()])
    _write_graph_def(graph_def, pb)
    return ModelFacts(
        path=pb,
        kind="frozen_pb",
        inputs=("image",),
        outputs=tuple(t.op.name for t in heads.values()),
        input_shapes={"image": POSE_INPUT_SHAPE},
        output_shapes={t.op.name: _shape(t.shape) for t in heads.values()},
    )


def _graph_with_float_input(name: str, shape: tuple[int, ...]) -> GraphDef:
    """A GraphDef holding one float32 Placeholder `name` of `shape`, built from the protos (no TensorFlow)."""
    from converter.protos import GraphDef

    graph = GraphDef()
    placeholder = graph.node.add(name=name, op="Placeholder")
    placeholder.attr["dtype"].type = 1  # DT_FLOAT
    for size in shape:
        placeholder.attr["shape"].shape.dim.add().size = size
    return graph


def write_einsum_diagonal_graph(pb_path: PathLike) -> ModelFacts:
    """x (3, 3) -> Einsum "ii->i" -> "diag": TensorFlow and TFLite run it; TF.js 4.22 converts it but fails at
    execute ("duplicate axes ... not implemented"): a TF.js artifact that cannot run. Written as protos, no TF."""
    pb = _prepare(pb_path)
    graph = _graph_with_float_input("x", (3, 3))
    einsum = graph.node.add(name="diag", op="Einsum", input=["x"])
    einsum.attr["equation"].s = b"ii->i"
    einsum.attr["N"].i = 1
    einsum.attr["T"].type = 1
    pb.write_bytes(graph.SerializeToString())
    return ModelFacts(
        path=pb, kind="frozen_pb", inputs=("x",), outputs=("diag",), input_shapes={"x": (3, 3)}, output_shapes={}
    )


def write_lgamma_graph(pb_path: PathLike) -> ModelFacts:
    """x (1, 4) -> Lgamma -> "y": TFLite converts it (Select TF ops), tensorflowjs refuses it (TF.js has no
    Lgamma): one target converts, the other cannot. Written as protos, no TF."""
    pb = _prepare(pb_path)
    graph = _graph_with_float_input("x", (1, 4))
    graph.node.add(name="y", op="Lgamma", input=["x"]).attr["T"].type = 1
    pb.write_bytes(graph.SerializeToString())
    return ModelFacts(path=pb, kind="frozen_pb", inputs=("x",), outputs=("y",), input_shapes={"x": (1, 4)})


def write_cancelling_weights_graph(pb_path: PathLike) -> ModelFacts:
    """x (1, 64) -> "margin" = x @ (W + 0.3) - x @ W, W about 1000: float16 weights round W by up to 0.25, so the
    float16 variants are off by about 17 % of the output's scale (float32 is exact to 1e-6)."""
    import numpy as np
    import tensorflow as tf

    pb = _prepare(pb_path)
    w = (1000 + _rng(7).random_sample((64, 8))).astype(np.float32)
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [1, 64], name="x")
        wide = tf.matmul(x, tf.constant(w + np.float32(0.3), name="w_plus"))
        tf.identity(wide - tf.matmul(x, tf.constant(w, name="w")), name="margin")
    _write_graph_def(graph.as_graph_def(), pb)
    return ModelFacts(
        path=pb,
        kind="frozen_pb",
        inputs=("x",),
        outputs=("margin",),
        input_shapes={"x": (1, 64)},
        output_shapes={"margin": (1, 8)},
    )


def write_centernet(path: PathLike, box_gain: float = 1.0) -> Path:
    """A CenterNet-style detector as a frozen graph: image [1,16,16,3] -> heatmap conv -> sigmoid -> 3x3
    MaxPool peaks -> TopKV2 (k 20) -> boxes gathered -> "detections" [20, 6] (box, score, class).

    The large heatmap bias saturates the sigmoid as trained detectors do on background: many
    scores land within a float32 step of each other, and the engines order them differently.
    """
    import numpy as np
    import tensorflow as tf

    path = _prepare(path)
    rng = np.random.default_rng(1)
    tf1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        image = tf1.placeholder(tf.float32, [1, DETECTOR_SIZE, DETECTOR_SIZE, 3], name="image")
        features = tf.nn.relu(tf.nn.conv2d(image, rng.normal(0, 0.5, (3, 3, 3, 8)).astype(np.float32), 1, "SAME"))
        logits = tf.nn.conv2d(features, rng.normal(0, 0.5, (3, 3, 8, DETECTOR_CLASSES)).astype(np.float32), 1, "SAME")
        heat = tf.sigmoid(logits + 14.0, name="heatmap")
        peaks = heat * tf.cast(tf.equal(heat, tf.nn.max_pool2d(heat, 3, 1, "SAME")), tf.float32)
        scores = tf.reshape(peaks, [1, DETECTOR_SIZE * DETECTOR_SIZE * DETECTOR_CLASSES], name="scores")
        values, indices = tf.math.top_k(scores, k=DETECTOR_K, name="topk")
        box_weights = (box_gain * rng.normal(0, 0.5, (3, 3, 8, 4))).astype(np.float32)
        boxes = tf.reshape(
            tf.nn.conv2d(features, box_weights, 1, "SAME"), [DETECTOR_SIZE * DETECTOR_SIZE, 4], name="box_head"
        )
        picked = tf.gather(boxes, tf.math.floordiv(indices[0], DETECTOR_CLASSES))
        classes = tf.cast(tf.math.floormod(indices[0], DETECTOR_CLASSES), tf.float32)
        tf.concat([picked, values[0][:, None], classes[:, None]], axis=1, name="detections")
    path.write_bytes(graph.as_graph_def().SerializeToString())
    return path


def write_ssd(path: PathLike) -> Path:
    """An SSD-style detector as a frozen graph: a uint8 image [1,8,8,3] -> boxes and scores ->
    NonMaxSuppressionV5 -> "detection_boxes", "detection_scores" padded to 10 rows, "num_detections"."""
    import numpy as np
    import tensorflow as tf

    path = _prepare(path)
    rng = np.random.default_rng(2)
    tf1 = tf.compat.v1
    anchors = SSD_SIZE * SSD_SIZE
    graph = tf.Graph()
    with graph.as_default():
        image = tf1.placeholder(tf.uint8, [1, SSD_SIZE, SSD_SIZE, 3], name="image")
        pixels = tf.cast(image, tf.float32) / 255.0
        raw = tf.nn.conv2d(pixels, rng.normal(0, 0.5, (3, 3, 3, 4)).astype(np.float32), 1, "SAME")
        offsets = 0.1 + 0.05 * tf.sigmoid(tf.reshape(raw, [anchors, 4]))
        centers = rng.random((anchors, 2)).astype(np.float32)
        boxes = tf.concat([centers - offsets[:, :2], centers + offsets[:, 2:]], 1, name="boxes")
        logits = tf.nn.conv2d(pixels, rng.normal(0, 0.5, (3, 3, 3, 1)).astype(np.float32), 1, "SAME")
        scores = tf.reshape(tf.sigmoid(logits), [anchors], name="box_scores")
        chosen, chosen_scores = tf.image.non_max_suppression_with_scores(boxes, scores, SSD_MAX, iou_threshold=0.5)
        count = tf.shape(chosen)[0]
        tf.pad(tf.gather(boxes, chosen), [[0, SSD_MAX - count], [0, 0]], name="detection_boxes")
        tf.pad(chosen_scores, [[0, SSD_MAX - count]], name="detection_scores")
        tf.cast(count, tf.float32, name="num_detections")
    path.write_bytes(graph.as_graph_def().SerializeToString())
    return path


def write_tf1_checkpoint(
    zip_path: PathLike, *, resource_variables: bool = False, renamed_keys: bool = False, shards: int = 1
) -> ModelFacts:
    """A TF1 training run's checkpoint as ``tf.compat.v1.train.Saver`` writes it, and a zip of it.

    x (None, 8, 8, 3) -> conv 3x3 (4) + Relu -> MaxPool 2x2 -> Reshape -> dropout (rate
    1 - keep_prob, a PlaceholderWithDefault 1.0) -> MatMul + BiasAdd "logits" -> Softmax "probs".
    "labels" (None,) int64 feed only a sparse softmax cross-entropy "loss", minimised for
    CHECKPOINT_STEPS steps (GradientDescent; Adam with resource variables, which adds slot
    variables) so the saved weights are not the initial ones. ``Saver.save(..., global_step)``
    writes model.ckpt-2.meta, .index, .data-* and the ``checkpoint`` file into a folder named
    like the zip (without .zip), zipped under that folder name.

    ``resource_variables``: VarHandleOp/ReadVariableOp instead of VariableV2.
    ``renamed_keys``: ``Saver(var_list={"net/<name>": var})``, so checkpoint keys are not node names.
    ``shards=2``: the dense layer's variables on a second CPU device and ``Saver(sharded=True)``:
    two data files, .data-00000-of-00002 and .data-00001-of-00002.

    ``path`` is the zip; ``extra_paths`` are the .meta, .index, data shards and ``checkpoint`` file.
    """
    import numpy as np
    import tensorflow as tf

    if shards not in (1, 2):
        raise ValueError(f"shards must be 1 or 2, not {shards}")
    v1 = tf.compat.v1
    archive = _prepare(zip_path)
    folder = _prepare_dir(archive.with_suffix(""))
    folder.mkdir()
    rng = _rng(5)
    dense_device = "/cpu:1" if shards == 2 else None

    def variable(name: str, value: NDArray[np.float32]) -> Any:
        return v1.get_variable(name, initializer=value, use_resource=resource_variables)

    graph = tf.Graph()
    with graph.as_default():
        v1.set_random_seed(SEED)
        x = v1.placeholder(tf.float32, CHECKPOINT_INPUT_SHAPE, name=CHECKPOINT_INPUT)
        labels = v1.placeholder(tf.int64, (None,), name="labels")
        keep_prob = v1.placeholder_with_default(1.0, shape=[], name="keep_prob")
        with v1.variable_scope("conv"):
            w = variable("weights", rng.normal(0, 0.3, (3, 3, 3, 4)).astype(np.float32))
            b = variable("biases", rng.normal(0, 0.1, (4,)).astype(np.float32))
        h = tf.nn.relu(tf.nn.bias_add(tf.nn.conv2d(x, w, [1, 1, 1, 1], "SAME"), b))
        h = tf.reshape(tf.nn.max_pool2d(h, 2, 2, "VALID"), [-1, 4 * 4 * 4])
        h = tf.nn.dropout(h, rate=1.0 - keep_prob)
        with tf.device(dense_device), v1.variable_scope("fc"):
            fw = variable("weights", rng.normal(0, 0.3, (64, CHECKPOINT_CLASSES)).astype(np.float32))
            fb = variable("biases", rng.normal(0, 0.1, (CHECKPOINT_CLASSES,)).astype(np.float32))
        logits = tf.nn.bias_add(tf.matmul(h, fw), fb, name="logits")
        probs = tf.nn.softmax(logits, name=CHECKPOINT_OUTPUT)
        xent = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
        loss = tf.reduce_mean(xent, name="loss")
        step = v1.train.get_or_create_global_step()
        optimizer = v1.train.AdamOptimizer(0.05) if resource_variables else v1.train.GradientDescentOptimizer(0.5)
        train = optimizer.minimize(loss, global_step=step)
        variables = v1.global_variables()
        var_list = {f"net/{v.op.name}": v for v in variables} if renamed_keys else variables
        saver = v1.train.Saver(var_list=var_list, sharded=shards > 1)
        init = v1.global_variables_initializer()
    with v1.Session(graph=graph, config=v1.ConfigProto(device_count={"CPU": shards})) as session:
        session.run(init)
        for _ in range(CHECKPOINT_STEPS):
            batch = rng.uniform(0.0, 1.0, (4, *CHECKPOINT_IMAGE)).astype(np.float32)
            session.run(train, {x: batch, labels: rng.randint(0, CHECKPOINT_CLASSES, 4)})
        prefix = Path(saver.save(session, str(folder / "model.ckpt"), global_step=step))

    files = [
        prefix.with_name(f"{prefix.name}.meta"),
        prefix.with_name(f"{prefix.name}.index"),
        *sorted(folder.glob(f"{prefix.name}.data-*")),
        folder / "checkpoint",
    ]
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for file in files:
            zf.write(file, f"{folder.name}/{file.name}")
    return ModelFacts(
        path=archive,
        kind="tf1_checkpoint",
        inputs=(CHECKPOINT_INPUT,),
        outputs=(probs.op.name,),
        input_shapes={CHECKPOINT_INPUT: CHECKPOINT_INPUT_SHAPE, "keep_prob": ()},
        output_shapes={probs.op.name: (None, CHECKPOINT_CLASSES)},
        optional_inputs=("keep_prob",),
        other_placeholders=("labels",),
        extra_paths=tuple(files),
        notes=(
            f"{'resource' if resource_variables else 'ref'} variables, {shards} data shard(s), "
            f"keys {'net/<node name>' if renamed_keys else 'node names'}; 'labels' feeds only the loss"
        ),
    )


# ------------------------------------------------------------------------------ main


def write_with_unknown_dims(source: PathLike, dest: PathLike, node: str = "image", dims: int = 3) -> Path:
    """A copy of a frozen graph whose `node` placeholder has its first `dims` sizes unknown (-1)."""
    from converter.protos import GraphDef as ProtoGraphDef  # no TensorFlow needed

    graph_def = ProtoGraphDef()
    graph_def.ParseFromString(Path(source).read_bytes())
    for item in graph_def.node:
        if item.name == node:
            for dim in item.attr["shape"].shape.dim[:dims]:
                dim.size = -1
    out = _prepare(dest)
    out.write_bytes(graph_def.SerializeToString())
    return out


def write_all(outdir: PathLike) -> list[ModelFacts]:
    """Write every model into ``outdir``; return their facts."""
    root = Path(outdir)
    root.mkdir(parents=True, exist_ok=True)
    model = keras_classifier()
    return [
        write_saved_model(root / "classifier_saved_model", model),
        write_frozen_from_keras(root / "classifier_frozen.pb", model),
        write_h5(root / "classifier.h5", model),
        write_keras_v3(root / "classifier.keras", model),
        write_weights_only_h5(root / "classifier.weights.h5", model),
        write_tf_keras_weights_h5(root / "classifier_tf_keras_weights.h5"),
        write_tf_keras_h5(root / "classifier_tf_keras.h5"),
        write_keras_with_lambda(root / "with_lambda.keras", root / "with_lambda.h5"),
        write_multi_output_keras(root / "two_heads_saved_model"),
        write_tf1_graph(root / "tf1_graph.pb", root / "tf1_graph.pbtxt"),
        write_multihead_graph(root / "pose_multihead.pb"),
        write_tf1_checkpoint(root / "tf1_checkpoint.zip"),
    ]


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def format_facts(facts: Sequence[ModelFacts], root: Path | None = None) -> str:
    """A human-readable table of written files and their facts."""

    def rel(p: Path) -> str:
        return str(p.relative_to(root)) if root is not None else str(p)

    def io(names: tuple[str, ...], shapes: Mapping[str, Shape]) -> str:
        return ", ".join(f"{n}{list(shapes[n]) if n in shapes else ''}" for n in names) or "-"

    lines = []
    for f in facts:
        files = ", ".join(rel(p) for p in (f.path, *f.extra_paths))
        size = sum(_size(p) for p in (f.path, *f.extra_paths))
        lines.append(f"{files}  [{f.kind}, {size / 1024:.1f} KiB]")
        lines.append(f"    inputs:  {io(f.inputs, f.input_shapes)}")
        lines.append(f"    outputs: {io(f.outputs, f.output_shapes)}")
        for label, values in (
            ("optional inputs", f.optional_inputs),
            ("other placeholders", f.other_placeholders),
            ("leftover sinks", f.leftover_sinks),
            ("signatures", f.signature_keys),
        ):
            if values:
                lines.append(f"    {label}: {', '.join(values)}")
        if f.notes:
            lines.append(f"    notes: {f.notes}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1 or args[0] in ("-h", "--help"):
        print("usage: python -m bench.model_factory OUTDIR", file=sys.stderr)
        return 2
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    root = Path(args[0])
    facts = write_all(root)
    print(format_facts(facts, root))
    return 0


if __name__ == "__main__":
    sys.exit(main())

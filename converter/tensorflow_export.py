"""TensorFlow targets: a frozen GraphDef `.pb`, and a SavedModel sent as one `.zip`.

These give the user back a plain TensorFlow model, e.g. after convbot rebuilt a TF.js graph model
or froze a TF1 checkpoint. Runs in the conversion process only: it imports TensorFlow.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

from converter import formats as fmt
from converter.archive import zip_folder
from converter.errors import ConversionError
from converter.protos import GraphDef


def write_frozen_graph(graph: GraphDef, out_path: Path) -> Path:
    """The pruned graph as a binary GraphDef: weights are constants, so the file is the whole model."""
    out_path.write_bytes(graph.SerializeToString())
    return out_path


def saved_model_from_graph(
    graph: GraphDef, inputs: Sequence[str], outputs: Sequence[str], work_dir: Path, zip_path: Path
) -> Path:
    """A SavedModel whose serving_default signature takes and returns the chosen nodes by name, zipped.

    The zip holds one folder named like the zip, so unzipping gives `tf.saved_model.load(folder)`.
    """
    import tensorflow as tf

    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(graph.SerializeToString())
    export_dir = work_dir / zip_path.stem
    if export_dir.exists():
        shutil.rmtree(export_dir)
    tf_graph = tf.Graph()
    try:
        with tf_graph.as_default(), tf.compat.v1.Session(graph=tf_graph) as session:
            tf.graph_util.import_graph_def(graph_def, name="")
            signature = tf.compat.v1.saved_model.signature_def_utils.predict_signature_def(
                inputs={name: tf_graph.get_tensor_by_name(f"{name}:0") for name in inputs},
                outputs={name: tf_graph.get_tensor_by_name(f"{name}:0") for name in outputs},
            )
            builder = tf.compat.v1.saved_model.Builder(str(export_dir))
            builder.add_meta_graph_and_variables(
                session, [fmt.SERVING_TAG], signature_def_map={fmt.SERVING_SIGNATURE: signature}
            )
            builder.save()
    except (ValueError, KeyError, TypeError) as error:
        raise ConversionError(
            f"SavedModel: could not write the model: {str(error).splitlines()[0]}", str(error)
        ) from None
    return save_zipped_saved_model(export_dir, zip_path)


def save_zipped_saved_model(saved_model_dir: Path, zip_path: Path) -> Path:
    """Zip a SavedModel folder under a top-level folder named like the zip."""
    zip_folder(saved_model_dir, zip_path, root=zip_path.stem)
    return zip_path


def frozen_graph_from_saved_model(saved_model_dir: Path, signature_key: str, out_path: Path) -> Path:
    """Freeze a SavedModel's signature into a GraphDef whose nodes carry the signature's keys.

    Inputs are Placeholders named after the input keys (TensorFlow names them so); each output
    gets an Identity node named after its key, so the frozen graph is fed and fetched by the same
    names as the SavedModel and the other artifacts.
    """
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    loaded = tf.saved_model.load(str(saved_model_dir))  # kept alive: the function reads its variables
    function = loaded.signatures[signature_key]
    frozen = convert_variables_to_constants_v2(function)
    graph_def = frozen.graph.as_graph_def()
    names = {node.name for node in graph_def.node}
    missing = [key for key in function.structured_input_signature[1] if key not in names]
    if missing:
        raise ConversionError(f"frozen graph: no input node named {', '.join(missing)} after freezing", "")
    # The frozen function's outputs are the signature's, flattened in sorted key order.
    for key, tensor in zip(sorted(function.structured_outputs), frozen.outputs, strict=True):
        if key in names:
            raise ConversionError(f"frozen graph: the output key {key} is already the name of another node", "")
        node = graph_def.node.add(name=key, op="Identity")
        node.input.append(tensor.name.removesuffix(":0"))
        node.attr["T"].type = tensor.dtype.as_datatype_enum
    out_path.write_bytes(graph_def.SerializeToString())
    return out_path

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

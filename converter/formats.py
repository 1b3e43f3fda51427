"""Names of the model formats and the file-layout constants convbot relies on."""

from __future__ import annotations

from enum import StrEnum


class ModelFormat(StrEnum):
    """A source model's format, as detected from the file's content."""

    FROZEN_GRAPH = "frozen-graph"  # binary GraphDef
    FROZEN_GRAPH_TEXT = "frozen-graph-text"  # text-format GraphDef (.pbtxt)
    SAVED_MODEL = "saved-model"  # a directory, or an archive holding one
    KERAS_H5 = "keras-h5"  # full-model HDF5 saved by model.save(...)
    KERAS_V3 = "keras-v3"  # Keras 3 `.keras` zip
    TFJS_GRAPH = "tfjs-graph"  # a TF.js graph model: model.json and its weight shards
    TF1_CHECKPOINT = "tf1-checkpoint"  # a tf.compat.v1 Saver's .meta graph with its .index and .data files

    @property
    def is_graph(self) -> bool:
        return self in (ModelFormat.FROZEN_GRAPH, ModelFormat.FROZEN_GRAPH_TEXT)

    @property
    def is_keras(self) -> bool:
        return self in (ModelFormat.KERAS_H5, ModelFormat.KERAS_V3)


class Target(StrEnum):
    """What a conversion produces."""

    TFLITE = "tflite"
    TFJS = "tfjs"  # TF.js graph model
    TFJS_LAYERS = "tfjs-layers"  # TF.js layers model, Keras sources only
    FROZEN_GRAPH = "pb"  # a frozen GraphDef, from graph sources (frozen graphs, TF.js graph models, checkpoints)
    SAVED_MODEL = "savedmodel"  # a SavedModel folder, sent zipped

    @property
    def is_tensorflow(self) -> bool:
        """A plain TensorFlow model, run by TensorFlow itself."""
        return self in (Target.FROZEN_GRAPH, Target.SAVED_MODEL)


class Quantization(StrEnum):
    """Quantization of an artifact. NONE and FLOAT16 apply to both targets; DYNAMIC, INT8 and INT8_IO to TFLite;
    UINT8 and UINT16 to TF.js."""

    NONE = "none"
    FLOAT16 = "float16"
    DYNAMIC = "dynamic"  # TFLite dynamic-range (the old post_training_quantize)
    UINT8 = "uint8"  # TF.js affine weight quantization
    UINT16 = "uint16"
    INT8 = "int8"  # TFLite full-integer, calibrated on the user's samples; float inputs and outputs
    INT8_IO = "int8-io"  # the same with int8 inputs and outputs (microcontrollers, the Edge TPU)
    # TF.js uint8 with the weights it rounds most kept in float16: made by convbot when uint8 fails its check
    # (converter/mixed_quant.py), never asked for by name.
    UINT8_MIXED = "uint8-mixed"
    # TFLite int8 (int8-io) with the layers it quantizes worst kept in float: made by convbot when int8 fails its
    # check (converter/int8_mixed.py), never asked for by name. Not full-integer: those layers need a float kernel.
    INT8_MIXED = "int8-mixed"
    INT8_IO_MIXED = "int8-io-mixed"

    @property
    def is_full_integer(self) -> bool:
        return self in (Quantization.INT8, Quantization.INT8_IO)

    @property
    def is_calibrated(self) -> bool:
        """Activations quantized on ranges set by the user's samples: full-integer, or int8 with layers in float."""
        return self.is_full_integer or self in (Quantization.INT8_MIXED, Quantization.INT8_IO_MIXED)


TFLITE_QUANTIZATIONS = (
    Quantization.NONE,
    Quantization.FLOAT16,
    Quantization.DYNAMIC,
    Quantization.INT8,
    Quantization.INT8_IO,
)
TFJS_QUANTIZATIONS = (Quantization.NONE, Quantization.FLOAT16, Quantization.UINT8, Quantization.UINT16)

SAVED_MODEL_PB = "saved_model.pb"
SAVED_MODEL_PBTXT = "saved_model.pbtxt"
SAVED_MODEL_VARIABLES_DIR = "variables"
SERVING_SIGNATURE = "serving_default"
SERVING_TAG = "serve"
TFJS_MODEL_JSON = "model.json"
KERAS_V3_CONFIG = "config.json"
KERAS_V3_WEIGHTS = "model.weights.h5"

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
ZIP_MAGIC = b"PK\x03\x04"
ZIP_EMPTY_MAGIC = b"PK\x05\x06"
GZIP_MAGIC = b"\x1f\x8b"
TFLITE_IDENTIFIER = b"TFL3"  # FlatBuffer file identifier, at byte offset 4
TAR_MAGIC_OFFSET = 257
TAR_MAGIC = b"ustar"

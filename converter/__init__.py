"""convbot's converter: detect → inspect → prune → convert, with no Telegram and no database.

    summary = converter.inspect("posenet.pb")
    result = converter.convert("posenet.pb", "out/", ConversionOptions(targets=(Target.TFLITE,)))

Inspecting a frozen graph never imports TensorFlow; converting runs TensorFlow in a child
process (`convert`) or in the calling process (`convert_in_process`, for warm workers).
"""

from converter.archive import ArchiveLimits
from converter.errors import (
    BadOptionsError,
    ConvbotError,
    ConversionError,
    ConversionTimeout,
    ConverterCrash,
    UnsafeArchiveError,
    UnsupportedModelError,
)
from converter.formats import ModelFormat, Quantization, Target
from converter.inspection import inspect
from converter.isolation import convert
from converter.options import ConversionOptions
from converter.result import Artifact, ConversionResult
from converter.summary import ModelSummary, NodeInfo, SignatureInfo, TensorSpec

__all__ = [
    "ArchiveLimits",
    "Artifact",
    "BadOptionsError",
    "ConvbotError",
    "ConversionError",
    "ConversionOptions",
    "ConversionResult",
    "ConversionTimeout",
    "ConverterCrash",
    "ModelFormat",
    "ModelSummary",
    "NodeInfo",
    "Quantization",
    "SignatureInfo",
    "Target",
    "TensorSpec",
    "UnsafeArchiveError",
    "UnsupportedModelError",
    "convert",
    "inspect",
]

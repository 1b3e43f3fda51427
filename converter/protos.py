"""TensorFlow protocol buffers without TensorFlow.

TensorBoard (a TensorFlow dependency) ships its own copy of TensorFlow's GraphDef and
MetaGraphDef messages that imports in a fraction of a second, whereas importing
TensorFlow takes seconds. Inspection must stay fast, so it reads graphs through these.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache

from google.protobuf.message import DecodeError
from tensorboard.compat.proto.graph_pb2 import GraphDef
from tensorboard.compat.proto.meta_graph_pb2 import MetaGraphDef
from tensorboard.compat.proto.types_pb2 import DataType

__all__ = [
    "DecodeError",
    "GraphDef",
    "MetaGraphDef",
    "WireFormatError",
    "dtype_name",
    "parse_saved_model",
    "top_level_fields",
]

# Wire types of the protocol buffer encoding.
VARINT, FIXED64, LENGTH_DELIMITED, START_GROUP, END_GROUP, FIXED32 = 0, 1, 2, 3, 4, 5


class WireFormatError(ValueError):
    """The bytes are not a well-formed protocol buffer; `truncated` if they simply end early."""

    def __init__(self, message: str, truncated: bool = False) -> None:
        super().__init__(message)
        self.truncated = truncated


def _read_varint(data: bytes | memoryview, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= len(data):
            raise WireFormatError("varint runs past the end", truncated=True)
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise WireFormatError("varint too long")


def top_level_fields(data: bytes | memoryview) -> Iterator[tuple[int, int, int, int]]:
    """Yield (field_number, wire_type, start, end) for each top-level field of a message.

    For length-delimited fields, start:end is the payload; for others, the raw value.
    Raises WireFormatError on bytes that cannot be a protocol buffer.
    """
    pos = 0
    size = len(data)
    while pos < size:
        key, pos = _read_varint(data, pos)
        field, wire_type = key >> 3, key & 7
        if field == 0:
            raise WireFormatError("field number 0")
        if wire_type == VARINT:
            start = pos
            _, pos = _read_varint(data, pos)
        elif wire_type == FIXED64:
            start, pos = pos, pos + 8
        elif wire_type == FIXED32:
            start, pos = pos, pos + 4
        elif wire_type == LENGTH_DELIMITED:
            length, start = _read_varint(data, pos)
            pos = start + length
        else:
            raise WireFormatError(f"unsupported wire type {wire_type}")
        if pos > size:
            raise WireFormatError("field runs past the end", truncated=True)
        yield field, wire_type, start, pos


def parse_saved_model(data: bytes) -> list[MetaGraphDef]:
    """Parse a `saved_model.pb` (message SavedModel { int64 schema = 1; repeated MetaGraphDef meta_graphs = 2; })."""
    view = memoryview(data)
    meta_graphs: list[MetaGraphDef] = []
    for field, wire_type, start, end in top_level_fields(view):
        if field == 2 and wire_type == LENGTH_DELIMITED:
            meta_graph = MetaGraphDef()
            meta_graph.ParseFromString(view[start:end].tobytes())
            meta_graphs.append(meta_graph)
        elif field != 1 or wire_type != VARINT:
            raise WireFormatError(f"unexpected field {field} in a SavedModel")
    return meta_graphs


@cache
def dtype_name(dtype: int) -> str:
    """'float32' for DT_FLOAT, 'int64' for DT_INT64, ...; the names NumPy and users know."""
    if dtype == 0:
        return "unknown"
    name: str = DataType.Name(dtype % 100)  # +100 marks a reference type
    return _DTYPE_NAMES.get(name, name.removeprefix("DT_").lower())


_DTYPE_NAMES = {
    "DT_FLOAT": "float32",
    "DT_DOUBLE": "float64",
    "DT_HALF": "float16",
    "DT_BFLOAT16": "bfloat16",
    "DT_COMPLEX64": "complex64",
    "DT_COMPLEX128": "complex128",
}

"""What inspection finds in a model: plain data, serialisable to JSON and back."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from converter.formats import ModelFormat

Shape = tuple[int | None, ...] | None  # None: rank unknown; None in a dimension: size unknown


@dataclass(frozen=True)
class TensorSpec:
    """An input or output a user can choose: a graph node, or a signature key."""

    name: str
    dtype: str = "unknown"
    shape: Shape = None
    optional: bool = False  # a PlaceholderWithDefault: has a default, need not be fed
    key: str | None = None  # the signature key, for SavedModel and Keras sources
    op: str | None = None

    @property
    def unknown_dims(self) -> list[int]:
        """Indices of dimensions whose size is not fixed."""
        return [i for i, d in enumerate(self.shape or ()) if d is None or d < 0]


@dataclass(frozen=True)
class NodeInfo:
    """One node of a graph."""

    name: str
    op: str
    inputs: tuple[str, ...] = ()
    dtype: str | None = None
    shape: Shape = None


@dataclass(frozen=True)
class SignatureInfo:
    """A SavedModel signature, as `saved_model_cli show` lists it."""

    key: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]


@dataclass(frozen=True)
class LayerInfo:
    """One layer of a Keras model."""

    name: str
    class_name: str


@dataclass(frozen=True)
class OpNote:
    """An op a target cannot take as it is, and what that means for the user."""

    op: str
    count: int
    note: str


@dataclass(frozen=True)
class TargetReadiness:
    """Whether a graph's ops suit TFLite and TF.js, found before converting."""

    checked: bool = True  # False when the ops are only known after loading (Keras)
    tflite_builtin_ok: bool = True
    tflite_needs_select_ops: tuple[OpNote, ...] = ()
    tflite_unsupported: tuple[OpNote, ...] = ()
    tfjs_ok: bool = True
    tfjs_unsupported: tuple[OpNote, ...] = ()


@dataclass(frozen=True)
class ModelSummary:
    """Everything `converter.inspect` learns about a model, without converting it."""

    path: str
    format: ModelFormat
    file_size: int
    node_count: int
    op_histogram: dict[str, int]
    suggested_inputs: tuple[TensorSpec, ...]
    suggested_outputs: tuple[TensorSpec, ...]
    readiness: TargetReadiness
    nodes: tuple[NodeInfo, ...] = ()
    signatures: tuple[SignatureInfo, ...] = ()
    layers: tuple[LayerInfo, ...] = ()
    warnings: tuple[str, ...] = ()
    details: dict[str, str] = field(default_factory=dict)  # e.g. keras_version

    def node(self, name: str) -> NodeInfo | None:
        for node in self.nodes:
            if node.name == name:
                return node
        return None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["format"] = self.format.value
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSummary:
        def specs(items: list[dict[str, Any]]) -> tuple[TensorSpec, ...]:
            return tuple(TensorSpec(**{**item, "shape": _shape(item.get("shape"))}) for item in items)

        def notes(items: list[dict[str, Any]]) -> tuple[OpNote, ...]:
            return tuple(OpNote(**item) for item in items)

        readiness = data["readiness"]
        return cls(
            path=data["path"],
            format=ModelFormat(data["format"]),
            file_size=data["file_size"],
            node_count=data["node_count"],
            op_histogram=dict(data["op_histogram"]),
            suggested_inputs=specs(data["suggested_inputs"]),
            suggested_outputs=specs(data["suggested_outputs"]),
            readiness=TargetReadiness(
                checked=readiness["checked"],
                tflite_builtin_ok=readiness["tflite_builtin_ok"],
                tflite_needs_select_ops=notes(readiness["tflite_needs_select_ops"]),
                tflite_unsupported=notes(readiness["tflite_unsupported"]),
                tfjs_ok=readiness["tfjs_ok"],
                tfjs_unsupported=notes(readiness["tfjs_unsupported"]),
            ),
            nodes=tuple(
                NodeInfo(n["name"], n["op"], tuple(n["inputs"]), n["dtype"], _shape(n["shape"]))
                for n in data["nodes"]
            ),
            signatures=tuple(
                SignatureInfo(s["key"], specs(s["inputs"]), specs(s["outputs"])) for s in data["signatures"]
            ),
            layers=tuple(LayerInfo(**layer) for layer in data["layers"]),
            warnings=tuple(data["warnings"]),
            details=dict(data["details"]),
        )


def _shape(value: list[int | None] | None) -> Shape:
    return None if value is None else tuple(value)

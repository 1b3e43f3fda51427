"""What inspection finds in a model: plain data, serialisable to JSON and back."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, NamedTuple

from converter.formats import ModelFormat
from converter.op_support import OpFinding, Readiness

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


class NodeInfo(NamedTuple):
    """One node of a graph. A named tuple, not a dataclass: graphs have tens of thousands of
    nodes, and building them is most of the time a big graph takes to inspect."""

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
class ModelSummary:
    """Everything `converter.inspect` learns about a model, without converting it."""

    path: str
    format: ModelFormat
    file_size: int
    node_count: int
    op_histogram: dict[str, int]
    suggested_inputs: tuple[TensorSpec, ...]
    suggested_outputs: tuple[TensorSpec, ...]
    readiness: Readiness | None  # None: a Keras model's ops are known only once loaded
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
        nodes = self.nodes
        data = asdict(replace(self, nodes=()))  # asdict would turn the node tuples into lists
        data["format"] = self.format.value
        data["nodes"] = [node._asdict() for node in nodes]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSummary:
        def specs(items: list[dict[str, Any]]) -> tuple[TensorSpec, ...]:
            return tuple(TensorSpec(**{**item, "shape": _shape(item.get("shape"))}) for item in items)

        def findings(items: list[dict[str, Any]]) -> tuple[OpFinding, ...]:
            return tuple(OpFinding(**item) for item in items)

        readiness = data["readiness"]
        return cls(
            path=data["path"],
            format=ModelFormat(data["format"]),
            file_size=data["file_size"],
            node_count=data["node_count"],
            op_histogram=dict(data["op_histogram"]),
            suggested_inputs=specs(data["suggested_inputs"]),
            suggested_outputs=specs(data["suggested_outputs"]),
            readiness=None
            if readiness is None
            else Readiness(
                tflite_builtin_ok=readiness["tflite_builtin_ok"],
                tflite_needs_select_ops=findings(readiness["tflite_needs_select_ops"]),
                tflite_unsupported=findings(readiness["tflite_unsupported"]),
                tfjs_ok=readiness["tfjs_ok"],
                tfjs_unsupported=findings(readiness["tfjs_unsupported"]),
                tfjs_needs_execute_async=findings(readiness["tfjs_needs_execute_async"]),
            ),
            nodes=tuple(
                NodeInfo(n["name"], n["op"], tuple(n["inputs"]), n["dtype"], _shape(n["shape"])) for n in data["nodes"]
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

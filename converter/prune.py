"""Cut a frozen graph down to what the chosen outputs need, with the chosen inputs as its
only placeholders. Pure protocol-buffer work: no TensorFlow."""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence

from converter.errors import BadOptionsError
from converter.graph_inspect import OPTIONAL_INPUT_OPS, source_node
from converter.protos import GraphDef

DT_INVALID = 0
# Checks that only guard a graph while training or debugging. TF.js cannot run Assert (tfjs #8304)
# and TFLite drops it; a control edge to one is cut so the check is left out of the artifact.
ASSERTION_OPS = frozenset({"Assert", "Print", "PrintV2"})


def clean_name(raw: str) -> str:
    """Strip what people paste around a node name: spaces, quotes, '^', a ':0' suffix."""
    name = raw.strip().strip("\"'`").strip()
    name = name.removeprefix("^")
    head, sep, tail = name.rpartition(":")
    if sep and tail.isdigit():
        if tail != "0":
            raise BadOptionsError(
                f"'{raw}' names output {tail} of node '{head}'; only a node's first output (:0) can be chosen"
            )
        name = head
    return name


def resolve_names(requested: Sequence[str], available: Sequence[str], what: str = "node") -> list[str]:
    """Map user-typed names onto the graph's node names, or say which are closest."""
    known = set(available)
    resolved = []
    for raw in requested:
        name = clean_name(raw)
        if name in known:
            resolved.append(name)
        elif f"import/{name}" in known:
            resolved.append(f"import/{name}")
        elif name.removeprefix("import/") in known:
            resolved.append(name.removeprefix("import/"))
        else:
            raise BadOptionsError(f"no {what} named {name}; closest: {', '.join(closest_names(name, available))}")
    return list(dict.fromkeys(resolved))


def closest_names(name: str, available: Sequence[str], count: int = 3) -> list[str]:
    """Names that look like `name`: close spellings first, then names containing its last part."""
    matches = difflib.get_close_matches(name, available, n=count, cutoff=0.5)
    tail = name.rsplit("/", 1)[-1].lower()
    for candidate in available:
        if len(matches) >= count:
            break
        if tail and tail in candidate.lower() and candidate not in matches:
            matches.append(candidate)
    return matches or list(available[:count])


def prune_graph(
    graph: GraphDef,
    inputs: Sequence[str],
    outputs: Sequence[str],
    shapes: Mapping[str, Sequence[int | None]] | None = None,
) -> GraphDef:
    """A copy of `graph` holding only what `outputs` need, fed by `inputs` alone.

    A chosen input becomes a Placeholder (with its shape from `shapes` where given), whatever
    it was. A PlaceholderWithDefault that was not chosen becomes an Identity of its default:
    left as it is, TF.js would demand it as an input at run time. Control edges to Assert and
    Print nodes are cut.
    """
    shapes = shapes or {}
    by_name = {node.name: node for node in graph.node}
    chosen = set(inputs)
    assertions = {node.name for node in graph.node if node.op in ASSERTION_OPS}

    def kept_inputs(node: object) -> list[str]:
        return [ref for ref in node.input if not (ref.startswith("^") and ref[1:] in assertions)]  # type: ignore[attr-defined]

    needed: set[str] = set()
    stack = list(outputs)
    while stack:
        name = stack.pop()
        if name in needed:
            continue
        needed.add(name)
        if name in chosen:
            continue  # a chosen input is a leaf: what fed it is cut off
        node = by_name.get(name)
        if node is None:
            raise BadOptionsError(f"the graph references a node that does not exist: {name}")
        stack.extend(source_node(ref) for ref in kept_inputs(node))

    pruned = GraphDef()
    pruned.versions.CopyFrom(graph.versions)
    pruned.library.CopyFrom(graph.library)
    for node in graph.node:
        if node.name not in needed:
            continue
        copy = pruned.node.add()
        copy.CopyFrom(node)
        if len(kept := kept_inputs(node)) != len(node.input):
            del copy.input[:]
            copy.input.extend(kept)
        if node.name in chosen:
            _make_placeholder(copy, shapes.get(node.name))
        elif node.op in OPTIONAL_INPUT_OPS:
            _make_identity_of_default(copy)

    leftover = [n.name for n in pruned.node if n.op in ("Placeholder", "PlaceholderV2") and n.name not in chosen]
    if leftover:
        raise BadOptionsError(f"the chosen outputs also need the input {', '.join(leftover)}; add it to the inputs")
    return pruned


def _make_placeholder(node: object, shape: Sequence[int | None] | None) -> None:
    attrs = node.attr  # type: ignore[attr-defined]
    dtype = DT_INVALID
    for key in ("dtype", "T"):
        if key in attrs:
            dtype = attrs[key].type
            break
    if dtype == DT_INVALID:
        raise BadOptionsError(f"'{node.name}' cannot be an input: its data type is not recorded in the graph")  # type: ignore[attr-defined]
    old_shape = None
    if "shape" in attrs and attrs["shape"].HasField("shape"):
        old_shape = attrs["shape"].shape
    elif "_output_shapes" in attrs and attrs["_output_shapes"].list.shape:
        old_shape = attrs["_output_shapes"].list.shape[0]
    saved = old_shape.SerializeToString() if old_shape is not None else None
    node.op = "Placeholder"  # type: ignore[attr-defined]
    del node.input[:]  # type: ignore[attr-defined]
    attrs.clear()
    attrs["dtype"].type = dtype
    target = attrs["shape"].shape
    target.SetInParent()  # a scalar adds no dimension: the empty shape must still be set
    if shape is not None:
        for size in shape:
            target.dim.add().size = -1 if size is None else int(size)
    elif saved is not None:
        target.ParseFromString(saved)
    else:
        target.unknown_rank = True


def _make_identity_of_default(node: object) -> None:
    attrs = node.attr  # type: ignore[attr-defined]
    dtype = attrs["dtype"].type
    default = [ref for ref in node.input if not ref.startswith("^")][:1]  # type: ignore[attr-defined]
    controls = [ref for ref in node.input if ref.startswith("^")]  # type: ignore[attr-defined]
    node.op = "Identity"  # type: ignore[attr-defined]
    del node.input[:]  # type: ignore[attr-defined]
    node.input.extend(default + controls)  # type: ignore[attr-defined]
    attrs.clear()
    attrs["T"].type = dtype

"""Run a TensorFlow.js model in the real TF.js runtime (Node.js + @tensorflow/tfjs) and read back
its outputs, so a converted model is known to load and execute before anyone is given it.

The work happens in ``node/run_tfjs.mjs``: one Node.js process per run, fed one JSON request on
stdin, answering one JSON line on stdout. Tensors travel as raw little-endian files in a private
temporary directory. This module does not import TensorFlow.

Naming, as TF.js 4.22 resolves it:

* inputs may be given by signature key (SavedModel conversions: ``{"image": ...}``), by node name
  (``"image"``) or by tensor name (``"image:0"``); frozen-graph conversions have no signature
  inputs, so their inputs are node names and *every* placeholder, PlaceholderWithDefault included,
  is listed in ``input_names``;
* outputs likewise: signature key, node name or tensor name; with ``outputs=None`` the model's own
  outputs are returned (``output_names``: the signature keys, in model.json order, else node names).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

NODE_DIR = Path(__file__).resolve().parent.parent / "node"
RUNNER = NODE_DIR / "run_tfjs.mjs"
TFJS_PACKAGE = NODE_DIR / "node_modules" / "@tensorflow" / "tfjs" / "package.json"
NODE_ENV_VAR = "CONVBOT_NODE"

NODE_MISSING = "TF.js not run: Node.js not found"
TFJS_MISSING = "TF.js not run: @tensorflow/tfjs not installed; run scripts/setup.sh"

# numpy dtype kind/name -> the TF.js dtype it is fed as. TF.js has no 64-bit or small integer
# tensors: integers become int32 (checked to fit), floats become float32.
_FLOAT_DTYPES = {"float16", "float32", "float64"}
_INT_DTYPES = {"int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"}
_INT32 = np.iinfo(np.int32)
# TF.js dtype -> (how its raw bytes are stored, the numpy dtype handed back).
_READ_DTYPES: dict[str, tuple[str, type[np.generic]]] = {
    "float32": ("<f4", np.float32),
    "int32": ("<i4", np.int32),
    "bool": ("u1", np.bool_),
}


class TfjsUnavailable(Exception):
    """TF.js cannot be run here: Node.js or the @tensorflow/tfjs package is missing."""


class TfjsRunError(Exception):
    """The model did not load or execute in TF.js (or the runner failed).

    ``stage`` is "load" or "execute" as reported by the runner, "request" when the runner rejected
    what it was asked, "timeout" when it was killed, "crash" when Node.js died without an answer.
    ``log`` is what Node.js wrote to stderr.
    """

    def __init__(self, message: str, stage: str, log: str = "") -> None:
        super().__init__(message)
        self.stage = stage
        self.log = log


@dataclass(frozen=True)
class TfjsRun:
    """One TF.js run: the outputs by the names they were asked for (model order when not asked)."""

    outputs: dict[str, NDArray[Any]]
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    used_async: bool
    backend: str


def node_executable() -> str | None:
    """The Node.js binary: $CONVBOT_NODE if set (a path or a name on PATH), else `node` on PATH."""
    override = os.environ.get(NODE_ENV_VAR)
    if override:
        return shutil.which(override)
    return shutil.which("node")


def _tfjs_dtype(array: NDArray[Any], name: str) -> tuple[str, NDArray[Any]]:
    dtype = array.dtype.name
    if dtype == "bool":
        return "bool", array.astype(np.uint8)
    if dtype in _FLOAT_DTYPES:
        return "float32", array.astype("<f4")
    if dtype in _INT_DTYPES:
        if array.size and (array.min() < _INT32.min or array.max() > _INT32.max):
            raise ValueError(f"input {name!r}: {dtype} values do not fit TF.js's int32")
        return "int32", array.astype("<i4")
    raise ValueError(f"input {name!r}: TF.js cannot take {dtype} tensors")


def _write_feeds(feeds: Mapping[str, ArrayLike], work: Path) -> dict[str, dict[str, Any]]:
    specs: dict[str, dict[str, Any]] = {}
    for index, (name, value) in enumerate(feeds.items()):
        array = np.asarray(value)
        dtype, raw = _tfjs_dtype(array, name)
        file = work / f"input_{index}.bin"
        np.ascontiguousarray(raw).tofile(file)
        specs[name] = {"dtype": dtype, "shape": [int(d) for d in array.shape], "file": str(file)}
    return specs


def _read_output(name: str, spec: Mapping[str, Any]) -> NDArray[Any]:
    dtype = str(spec["dtype"])
    shape = tuple(int(d) for d in spec["shape"])
    file = Path(spec["file"])
    if dtype == "string":
        strings = json.loads(file.read_text(encoding="utf-8"))
        return np.array(strings, dtype=object).reshape(shape)
    if dtype not in _READ_DTYPES:
        raise TfjsRunError(f"output {name!r} has dtype {dtype}, which convbot cannot read", "execute")
    stored, native = _READ_DTYPES[dtype]
    return np.fromfile(file, dtype=stored).reshape(shape).astype(native)


def _reply(stdout: str, stderr: str, returncode: int) -> dict[str, Any]:
    for line in reversed(stdout.splitlines()):
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            reply = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(reply, dict):
            return reply
    tail = stderr.strip().splitlines()[-5:]
    detail = "\n".join(tail) if tail else "no output"
    raise TfjsRunError(f"TF.js runner exited with code {returncode} without a result: {detail}", "crash", stderr)


def run_tfjs_model(
    model_dir: Path,
    feeds: Mapping[str, ArrayLike],
    outputs: Sequence[str] | None = None,
    *,
    kind: str = "graph",
    timeout: float = 120.0,
    positional: bool = False,
    backend: str = "cpu",
) -> TfjsRun:
    """Load the TF.js model in ``model_dir`` (model.json + shards) in Node.js and run it on ``feeds``.

    ``kind`` is "graph" for graph models, "layers" for layers models. A graph model is fed by
    name, unless ``positional``: then the feeds' values go in as ``model.execute(tensor)`` or
    ``model.execute([tensors...])`` in the mapping's order, as most web code calls a model; that
    fails when the graph has more inputs than were fed (e.g. a PlaceholderWithDefault), where
    feeding by name lets TF.js use the default. ``backend`` is "cpu" or "wasm".

    Raises TfjsUnavailable when Node.js or @tensorflow/tfjs is missing, TfjsRunError when the
    model fails in TF.js.
    """
    if kind not in ("graph", "layers"):
        raise ValueError(f"kind must be 'graph' or 'layers', not {kind!r}")
    if backend not in ("cpu", "wasm"):
        raise ValueError(f"backend must be 'cpu' or 'wasm', not {backend!r}")
    node = node_executable()
    if node is None:
        raise TfjsUnavailable(NODE_MISSING)
    if not TFJS_PACKAGE.is_file() or not RUNNER.is_file():
        raise TfjsUnavailable(TFJS_MISSING)

    with tempfile.TemporaryDirectory(prefix="convbot-tfjs-") as tmp:
        work = Path(tmp)
        out_dir = work / "out"
        out_dir.mkdir()
        request = {
            "model_dir": str(Path(model_dir).resolve()),
            "kind": kind,
            "inputs": _write_feeds(feeds, work),
            "input_order": list(feeds),  # JSON objects lose the order of integer-like keys in JS
            "outputs": list(outputs) if outputs is not None else None,
            "out_dir": str(out_dir),
            "positional": positional,
            "backend": backend,
        }
        try:
            done = subprocess.run(
                [node, str(RUNNER)],
                input=json.dumps(request),
                capture_output=True,
                text=True,
                timeout=timeout,
                cwd=NODE_DIR,
                check=False,
            )
        except subprocess.TimeoutExpired as expired:  # subprocess.run has killed Node.js
            stderr = expired.stderr or ""
            log = stderr.decode(errors="replace") if isinstance(stderr, bytes) else stderr
            raise TfjsRunError(f"TF.js run timed out after {timeout:g} s", "timeout", log) from None
        except OSError as error:
            raise TfjsUnavailable(f"{NODE_MISSING} ({error})") from None

        reply = _reply(done.stdout, done.stderr, done.returncode)
        if not reply.get("ok"):
            raise TfjsRunError(
                str(reply.get("error", "unknown TF.js error")), str(reply.get("stage", "execute")), done.stderr
            )
        specs: dict[str, Any] = reply["outputs"]
        order = list(outputs) if outputs is not None else list(reply["output_names"])
        names = [name for name in dict.fromkeys(order) if name in specs] + [name for name in specs if name not in order]
        return TfjsRun(
            outputs={name: _read_output(name, specs[name]) for name in names},
            input_names=tuple(reply.get("input_names", ())),
            output_names=tuple(reply.get("output_names", ())),
            used_async=bool(reply.get("async", False)),
            backend=str(reply.get("backend", "")),
        )

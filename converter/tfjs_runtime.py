"""Run a TensorFlow.js model in the real TF.js runtime (Node.js + @tensorflow/tfjs) and read back
its outputs, so a converted model is known to load and execute before anyone is given it.

The work happens in ``node/run_tfjs.mjs --serve``: one warm Node.js process per Python process
(``TfjsRunner``, started on first use), fed one JSON request per line on stdin and answering one
JSON line per request on stdout; it keeps the models it loaded, so a model verified on several
input sets is parsed once. Tensors travel as raw little-endian files in a private temporary
directory: for a 256x256x3 image, 0.5 ms to write and read back, against 7 ms as base64 in the
JSON line, and 14-160 ms for the run itself. This module does not import TensorFlow.

Backend: "auto" (the default) runs a model on TF.js's WASM backend, 1.1-19x faster than the
pure-JavaScript CPU backend on the models in tests/data and within 2.4e-5 of its outputs relative
to scale (bench/tfjs_backends.py), and on CPU when WASM cannot load or run the model (a kernel it
lacks, such as Einsum or UnsortedSegmentSum); ``TfjsRun.backend`` says which ran it.

Naming, as TF.js 4.22 resolves it:

* inputs may be given by signature key (SavedModel conversions: ``{"image": ...}``), by node name
  (``"image"``) or by tensor name (``"image:0"``); frozen-graph conversions have no signature
  inputs, so their inputs are node names and *every* placeholder, PlaceholderWithDefault included,
  is listed in ``input_names``;
* outputs likewise: signature key, node name or tensor name; with ``outputs=None`` the model's own
  outputs are returned (``output_names``: the signature keys, in model.json order, else node names).
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

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
    backend: str  # "wasm" or "cpu": the TF.js backend that ran the model
    fallback: str = ""  # why WASM did not run it, when "auto" ran it on CPU


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


class _NodeDied(Exception):
    """The Node.js process ended without answering."""

    def __init__(self, returncode: int, log: str) -> None:
        tail = log.strip().splitlines()[-5:]
        detail = "\n".join(tail) if tail else "no output"
        super().__init__(f"TF.js runner exited with code {returncode} without a result: {detail}")
        self.log = log


class _NodeProcess:
    """One `node run_tfjs.mjs --serve` process, with threads that collect its answers and its log."""

    def __init__(self, node: str) -> None:
        self.node = node
        self.popen = subprocess.Popen(
            [node, str(RUNNER), "--serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            errors="replace",
            cwd=NODE_DIR,
        )
        self.answers: queue.Queue[str | None] = queue.Queue()  # None: stdout closed, Node.js ended
        self.log: deque[str] = deque(maxlen=200)  # what Node.js wrote to stderr for the current request
        threading.Thread(target=self._collect_answers, args=(self.popen.stdout,), daemon=True).start()
        threading.Thread(target=self._collect_log, args=(self.popen.stderr,), daemon=True).start()

    def _collect_answers(self, stream: IO[str]) -> None:
        for line in stream:
            self.answers.put(line)
        self.answers.put(None)

    def _collect_log(self, stream: IO[str]) -> None:
        for line in stream:
            self.log.append(line)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def ask(self, request: Mapping[str, Any], timeout: float) -> dict[str, Any]:
        """Send one request and wait for its answer; raises _NodeDied, TfjsRunError (timeout)."""
        self.log.clear()
        assert self.popen.stdin is not None
        try:
            self.popen.stdin.write(json.dumps(request) + "\n")
            self.popen.stdin.flush()
        except OSError:  # the process is gone (BrokenPipeError)
            raise _NodeDied(self.popen.wait(), self.log_text()) from None
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.answers.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.stop()
                raise TfjsRunError(f"TF.js run timed out after {timeout:g} s", "timeout", self.log_text()) from None
            if line is None:
                raise _NodeDied(self.popen.wait(), self.log_text())
            answer = _json_object(line)
            if answer is not None and answer.get("id") == request["id"]:
                return answer

    def log_text(self) -> str:
        return "".join(self.log)

    def stop(self) -> None:
        """End the process now (a hung run cannot be interrupted any other way)."""
        self.popen.kill()
        self.popen.wait()
        self.close_pipes()

    def finish(self) -> None:
        """Let the process end by closing its stdin (it exits when stdin closes); kill it if it lingers."""
        try:
            assert self.popen.stdin is not None
            self.popen.stdin.close()
            self.popen.wait(timeout=2)
        except (OSError, subprocess.TimeoutExpired):
            self.popen.kill()
            self.popen.wait()
        self.close_pipes()

    def close_pipes(self) -> None:
        for stream in (self.popen.stdin, self.popen.stdout, self.popen.stderr):
            if stream is not None:
                with contextlib.suppress(OSError):  # a pipe broken by the process's death
                    stream.close()


def _json_object(line: str) -> dict[str, Any] | None:
    try:
        value = json.loads(line)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


class TfjsRunner:
    """A warm Node.js process for TF.js runs: started on first use and reused by every run.

    Importing TF.js and parsing a model cost more than running it, and verification runs TF.js
    many times per conversion. Requests are answered one at a time. A process that died between
    runs (killed, out of memory) is replaced once, transparently; a run that does not answer in
    time is killed with its process, and the next run starts a fresh one.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process: _NodeProcess | None = None
        self._ids = itertools.count(1)

    @property
    def pid(self) -> int | None:
        """The Node.js process id, while one is running."""
        process = self._process
        return process.popen.pid if process is not None and process.alive() else None

    def request(self, node: str, request: Mapping[str, Any], timeout: float) -> tuple[dict[str, Any], str]:
        """Send `request` to Node.js `node`; returns the answer and what Node.js logged meanwhile.

        Raises TfjsRunError (stage "timeout", or "crash" when Node.js died twice without answering)
        and OSError when `node` cannot be started.
        """
        with self._lock:
            ask = {**request, "id": next(self._ids)}
            try:
                return self._ask(node, ask, timeout)
            except _NodeDied:  # perhaps killed since the last run: once more on a fresh process
                pass
            try:
                return self._ask(node, ask, timeout)
            except _NodeDied as died:
                raise TfjsRunError(str(died), "crash", died.log) from None

    def _ask(self, node: str, request: Mapping[str, Any], timeout: float) -> tuple[dict[str, Any], str]:
        process = self._started(node)
        try:
            answer = process.ask(request, timeout)
        except (_NodeDied, TfjsRunError):
            self._process = None
            process.stop()
            raise
        return answer, process.log_text()

    def _started(self, node: str) -> _NodeProcess:
        process = self._process
        if process is not None and process.alive() and process.node == node:
            return process
        if process is not None:
            process.stop()
        self._process = _NodeProcess(node)
        return self._process

    def close(self) -> None:
        """End the Node.js process, if any; the next run starts another."""
        with self._lock:
            process, self._process = self._process, None
            if process is not None:
                process.finish()

    def forget(self) -> None:
        """In a forked child: the process belongs to the parent, so leave it alone and start afresh."""
        self._lock = threading.Lock()
        self._process = None


_SHARED = TfjsRunner()
atexit.register(_SHARED.close)
os.register_at_fork(after_in_child=_SHARED.forget)


def shared_runner() -> TfjsRunner:
    """The Node.js process every `run_tfjs_model` call of this Python process uses."""
    return _SHARED


def run_tfjs_model(
    model_dir: Path,
    feeds: Mapping[str, ArrayLike],
    outputs: Sequence[str] | None = None,
    *,
    kind: str = "graph",
    timeout: float = 120.0,
    positional: bool = False,
    backend: str = "auto",
    runner: TfjsRunner | None = None,
) -> TfjsRun:
    """Load the TF.js model in ``model_dir`` (model.json + shards) in Node.js and run it on ``feeds``.

    ``kind`` is "graph" for graph models, "layers" for layers models. A graph model is fed by
    name, unless ``positional``: then the feeds' values go in as ``model.execute(tensor)`` or
    ``model.execute([tensors...])`` in the mapping's order, as most web code calls a model; that
    fails when the graph has more inputs than were fed (e.g. a PlaceholderWithDefault), where
    feeding by name lets TF.js use the default. ``backend`` is "cpu", "wasm" or "auto" (WASM, and
    CPU when WASM fails to load or run the model: the CPU backend's error is the one raised).
    ``runner`` is the Node.js process to use: by default the one shared by this Python process.
    ``timeout`` bounds the run, including starting Node.js when it is not running yet.

    Raises TfjsUnavailable when Node.js or @tensorflow/tfjs is missing, TfjsRunError when the
    model fails in TF.js.
    """
    if kind not in ("graph", "layers"):
        raise ValueError(f"kind must be 'graph' or 'layers', not {kind!r}")
    if backend not in ("cpu", "wasm", "auto"):
        raise ValueError(f"backend must be 'cpu', 'wasm' or 'auto', not {backend!r}")
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
            reply, log = (runner or _SHARED).request(node, request, timeout)
        except OSError as error:
            raise TfjsUnavailable(f"{NODE_MISSING} ({error})") from None
        if not reply.get("ok"):
            raise TfjsRunError(str(reply.get("error", "unknown TF.js error")), str(reply.get("stage", "execute")), log)
        specs: dict[str, Any] = reply["outputs"]
        order = list(outputs) if outputs is not None else list(reply["output_names"])
        names = [name for name in dict.fromkeys(order) if name in specs] + [name for name in specs if name not in order]
        return TfjsRun(
            outputs={name: _read_output(name, specs[name]) for name in names},
            input_names=tuple(reply.get("input_names", ())),
            output_names=tuple(reply.get("output_names", ())),
            used_async=bool(reply.get("async", False)),
            backend=str(reply.get("backend", "")),
            fallback=str(reply.get("fallback", "")),
        )

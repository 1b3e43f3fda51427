"""Recognise what a user sent by its content, never its file name, and say plainly
what is wrong with anything that is not a model convbot can read."""

from __future__ import annotations

import json
import os
import re
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from converter import formats as fmt
from converter.archive import ArchiveLimits, archive_kind, extract_archive
from converter.checkpoint_input import META_SUFFIX, checkpoint_prefix, read_meta_graph
from converter.errors import UnsupportedModelError
from converter.formats import ModelFormat
from converter.protos import (
    LENGTH_DELIMITED,
    VARINT,
    DecodeError,
    MetaGraphDef,
    WireFormatError,
    parse_saved_model,
    top_level_fields,
)
from converter.units import tree_size

HEAD_BYTES = 4096
# Ops that only appear in a graph that still reads its weights from a variables/ folder.
VARIABLE_OPS = frozenset({"VarHandleOp", "VariableV2", "Variable", "RestoreV2", "ReadVariableOp"})
ONNX_FIELDS = frozenset({1, 2, 3, 4, 5, 6, 7, 8, 14, 20, 25})
GRAPH_DEF_FIELDS = frozenset({1, 2, 3, 4, 5})
# MetaGraphDef: meta_info_def = 1, graph_def = 2, saver_def = 3, collection_def = 4, signature_def = 5, ...
META_GRAPH_FIELDS = frozenset({1, 2, 3, 4, 5, 6, 7})
CLASSIFY_FIELDS = 32
MAX_MODEL_JSON_BYTES = 256 * 1024 * 1024  # a .json larger than this is not read to see if it is a TF.js model
# The text file a TF1 Saver keeps beside its checkpoints, naming the latest one.
CHECKPOINT_STATE_FILE = "checkpoint"
CHECKPOINT_STATE_MAX_BYTES = 64 * 1024
CHECKPOINT_PATH_LINE = re.compile(r'^\s*model_checkpoint_path:\s*"([^"]*)"', re.MULTILINE)
CHECKPOINT_STEP = re.compile(r"-(\d+)$")
DATA_SHARD = re.compile(r"\.data-(\d+)-of-(\d+)$")
SEND_CHECKPOINT_FILES = "send the .meta, .index and .data files together in one .zip"


@dataclass(frozen=True)
class ModelSource:
    """A recognised model: `path` is what the loaders read (graph file, SavedModel folder, Keras file)."""

    format: ModelFormat
    path: Path
    original: Path
    file_size: int


def detect_model(path: Path, work_dir: Path, limits: ArchiveLimits = ArchiveLimits()) -> ModelSource:
    """Find out what `path` holds; archives are unpacked into `work_dir`, which must be private and empty."""
    path = Path(path)
    if not path.exists():
        raise UnsupportedModelError(f"no such file or folder: {path}")
    if path.is_dir():
        return _detect_directory(path, path, tree_size(path), staging=work_dir)
    size = path.stat().st_size
    if size == 0:
        raise UnsupportedModelError("the file is empty")
    with path.open("rb") as f:
        head = f.read(HEAD_BYTES)

    if head.startswith(fmt.HDF5_MAGIC):
        return ModelSource(_classify_hdf5(path), path, path, size)
    if head[4:8] == fmt.TFLITE_IDENTIFIER:
        raise UnsupportedModelError(
            "this is already a TensorFlow Lite model (.tflite); send the TensorFlow model it was made from"
        )
    if head.startswith((fmt.ZIP_MAGIC, fmt.ZIP_EMPTY_MAGIC)) and _is_keras_v3_zip(path):
        return ModelSource(ModelFormat.KERAS_V3, path, path, size)
    if archive_kind(path) is not None:
        work_dir.mkdir(parents=True, exist_ok=True)
        extract_archive(path, work_dir, limits)
        return _detect_directory(work_dir, path, size)
    if head.startswith(fmt.GZIP_MAGIC):
        raise UnsupportedModelError("a gzip file that does not hold a tar archive; send a .zip or .tar.gz")
    text = _as_text(head)
    if text is not None:
        return _detect_text(path, text, size, work_dir)
    return _detect_protobuf(path, size)


def _detect_directory(folder: Path, original: Path, size: int, staging: Path | None = None) -> ModelSource:
    """What a folder holds. `staging` is a private folder for a user's own folder (CLI), which is
    never written to; None means `folder` is convbot's own unpacked copy of an upload."""
    saved_models = sorted(folder.rglob(fmt.SAVED_MODEL_PB), key=lambda p: len(p.parts))
    if saved_models:
        root = saved_models[0].parent
        _check_saved_model_folder(root)
        return ModelSource(ModelFormat.SAVED_MODEL, root, original, size)
    if list(folder.rglob(fmt.SAVED_MODEL_PBTXT)):
        raise UnsupportedModelError(
            "text SavedModels (saved_model.pbtxt) are not supported; save it with tf.saved_model.save(...)"
        )
    model_json = _find_tfjs_model_json(folder)
    if model_json is not None:
        return _tfjs_source(model_json, original, size, staging)
    if _checkpoint_files(folder, "*.meta") or _checkpoint_files(folder, "*.index"):
        return ModelSource(ModelFormat.TF1_CHECKPOINT, _find_checkpoint_meta(folder), original, size)
    files = [p for p in folder.rglob("*") if p.is_file()]
    if len(files) == 1:
        # An archive around a single graph or Keras file: read that file.
        inner = files[0]
        detected = detect_model(inner, folder / ".inner-unused")
        return ModelSource(detected.format, detected.path, original, size)
    raise UnsupportedModelError(
        "no model found in the archive: expected a SavedModel folder (saved_model.pb with variables/)"
    )


def _check_saved_model_folder(root: Path) -> None:
    try:
        meta_graphs = parse_saved_model((root / fmt.SAVED_MODEL_PB).read_bytes())
    except (WireFormatError, ValueError) as error:
        raise UnsupportedModelError("saved_model.pb is damaged or truncated") from error
    if not meta_graphs:
        raise UnsupportedModelError("saved_model.pb holds no graph")
    if _needs_variables(meta_graphs) and not (root / fmt.SAVED_MODEL_VARIABLES_DIR / "variables.index").is_file():
        raise _missing_variables()


def _needs_variables(meta_graphs: list[MetaGraphDef]) -> bool:
    for meta_graph in meta_graphs:
        graph = meta_graph.graph_def
        ops = {node.op for node in graph.node}
        for function in graph.library.function:
            ops.update(node.op for node in function.node_def)
        if ops & VARIABLE_OPS:
            return True
    return False


def _missing_variables() -> UnsupportedModelError:
    return UnsupportedModelError(
        "this is a SavedModel's saved_model.pb without its variables/ folder; "
        "send the whole SavedModel folder as a .zip or .tar.gz"
    )


def _find_tfjs_model_json(folder: Path) -> Path | None:
    """The TF.js model's JSON in `folder`: a `model.json`, else any .json whose content is a TF.js
    model (tools name it freely: blazeface.json); the shallowest wins."""
    candidates = sorted(folder.rglob("*.json"), key=lambda p: (len(p.parts), p.name != fmt.TFJS_MODEL_JSON, p.name))
    for candidate in candidates:
        if candidate.name == fmt.TFJS_MODEL_JSON or _looks_like_tfjs_model(candidate):
            return candidate
    return None


def _looks_like_tfjs_model(path: Path) -> bool:
    if not path.is_file() or path.stat().st_size > MAX_MODEL_JSON_BYTES:
        return False
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return False
    return isinstance(data, dict) and "modelTopology" in data and "weightsManifest" in data


def _tfjs_source(model_json: Path, original: Path, size: int, staging: Path | None) -> ModelSource:
    """A TF.js model whose JSON is `model_json`, as a folder holding `model.json` and its shards.

    The loaders read `<folder>/model.json`. A JSON named otherwise is copied to that name: beside
    itself in convbot's copy of an upload; for a user's folder, into `staging` with links to the
    shards, so the user's files are never touched.
    """
    model = _check_tfjs_folder(model_json)
    if model_json.name == fmt.TFJS_MODEL_JSON:
        return ModelSource(ModelFormat.TFJS_GRAPH, model_json.parent, original, size)
    if staging is None:
        shutil.copyfile(model_json, model_json.parent / fmt.TFJS_MODEL_JSON)
        return ModelSource(ModelFormat.TFJS_GRAPH, model_json.parent, original, size)
    folder = staging / "tfjs-model"
    folder.mkdir(parents=True)
    shutil.copyfile(model_json, folder / fmt.TFJS_MODEL_JSON)
    for shard in _manifest_paths(model):
        link = shard_file(folder, shard)
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.exists():
            link.symlink_to(shard_file(model_json.parent, shard))
    return ModelSource(ModelFormat.TFJS_GRAPH, folder, original, size)


def _manifest_paths(data: dict[str, object]) -> list[str]:
    """Every shard path the weights manifest names, in order (malformed entries skipped)."""
    groups = data.get("weightsManifest")
    if not isinstance(groups, list):
        return []
    paths = [group.get("paths") or [] for group in groups if isinstance(group, dict)]
    return [str(path) for group_paths in paths if isinstance(group_paths, list) for path in group_paths]


def _check_tfjs_folder(model_json: Path) -> dict[str, Any]:
    """The parsed JSON of a TF.js graph model whose weight shards are all beside it."""
    try:
        data = json.loads(model_json.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError) as error:
        raise UnsupportedModelError(f"{model_json.name} is not valid JSON") from error
    if not isinstance(data, dict) or not isinstance(data.get("modelTopology"), dict):
        raise UnsupportedModelError(f"{model_json.name} has no modelTopology: it is not a TF.js model")
    if "node" not in data["modelTopology"]:
        raise UnsupportedModelError(
            "this is a TF.js layers model; only TF.js graph models are supported (convert the Keras original)"
        )
    for shard in _manifest_paths(data):
        if not shard_file(model_json.parent, shard).is_file():
            raise UnsupportedModelError(
                f"the TF.js weight shard {shard} named in {model_json.name} is missing; "
                f"send {model_json.name} and its shards together in one .zip"
            )
    return data


def _checkpoint_files(folder: Path, pattern: str) -> list[Path]:
    # macOS archivers add a '._name' twin of every file (under __MACOSX/); those are not checkpoint files.
    return sorted(p for p in folder.rglob(pattern) if p.is_file() and not p.name.startswith("._"))


def _find_checkpoint_meta(folder: Path) -> Path:
    """The .meta of the TF1 checkpoint in `folder`, checked to be readable and to have its weights beside it."""
    metas = _checkpoint_files(folder, f"*{META_SUFFIX}")
    if not metas:
        index = _checkpoint_files(folder, "*.index")[0]
        if index.name == "variables.index":
            raise UnsupportedModelError(
                "this is a SavedModel's variables/ folder without its saved_model.pb; "
                "send the whole SavedModel folder as a .zip or .tar.gz"
            )
        raise UnsupportedModelError(
            f"the archive holds checkpoint weights ({index.name}) but no .meta graph; {SEND_CHECKPOINT_FILES} "
            "(a TF2 tf.train.Checkpoint holds no graph: export a SavedModel instead)"
        )
    meta = _chosen_meta(folder, metas)
    read_meta_graph(meta)  # a damaged .meta is refused now, not halfway through a conversion
    _check_checkpoint_files(meta)
    return meta


def _chosen_meta(folder: Path, metas: list[Path]) -> Path:
    """The checkpoint the Saver's `checkpoint` file names, else the only one, else the latest step."""
    named = _named_checkpoint_prefixes(folder)
    for meta in metas:
        if checkpoint_prefix(meta) in named:
            return meta
    if len(metas) == 1:
        return metas[0]
    steps = [(int(match.group(1)), meta) for meta in metas if (match := CHECKPOINT_STEP.search(meta.stem))]
    if steps:
        return max(steps)[1]
    raise UnsupportedModelError(
        f"the archive holds several TF1 checkpoints ({', '.join(meta.name for meta in metas)}); send one"
    )


def _named_checkpoint_prefixes(folder: Path) -> set[Path]:
    """Prefixes the `checkpoint` files name as the latest. Only each path's base name is used: the
    file holds paths on the machine that trained, and a path read from an upload is never followed."""
    named = set()
    for state in _checkpoint_files(folder, CHECKPOINT_STATE_FILE):
        with state.open("rb") as file:
            text = file.read(CHECKPOINT_STATE_MAX_BYTES).decode("utf-8", errors="replace")
        for match in CHECKPOINT_PATH_LINE.finditer(text):
            base = re.split(r"[\\/]", match.group(1))[-1]
            if base not in ("", ".", ".."):
                named.add(state.parent / base)
    return named


def _check_checkpoint_files(meta: Path) -> None:
    """The .index and every .data shard of the checkpoint whose graph is `meta` are beside it."""
    prefix = checkpoint_prefix(meta)
    index = prefix.with_name(f"{prefix.name}.index")
    shard_counts = [
        int(match.group(2))
        for path in prefix.parent.iterdir()
        if path.name.startswith(f"{prefix.name}.data-") and (match := DATA_SHARD.search(path.name))
    ]
    if not index.is_file() and not shard_counts:
        raise UnsupportedModelError(
            f"{meta.name} is a TF1 checkpoint's .meta graph without its weights; {SEND_CHECKPOINT_FILES}"
        )
    if not index.is_file():
        raise _missing_checkpoint_file(index.name)
    count = max(shard_counts, default=1)
    for shard in range(count):
        name = f"{prefix.name}.data-{shard:05d}-of-{count:05d}"
        if not (prefix.parent / name).is_file():
            raise _missing_checkpoint_file(name)


def _missing_checkpoint_file(name: str) -> UnsupportedModelError:
    return UnsupportedModelError(f"the TF1 checkpoint's {name} is missing; {SEND_CHECKPOINT_FILES}")


def _checkpoint_size(meta: Path) -> int:
    """Bytes of the .meta, .index and .data files together."""
    prefix = checkpoint_prefix(meta)
    files = [p for p in prefix.parent.iterdir() if p.name.startswith(f"{prefix.name}.") and p.is_file()]
    return sum(p.stat().st_size for p in files)


def shard_file(model_dir: Path, name: str) -> Path:
    """The file a manifest path names. Paths are URLs relative to model.json, so %-escapes are
    decoded as TF.js decodes them; a path out of the model folder is refused (uploads are hostile)."""
    # Normalised as text, as TF.js and Node.js do: links convbot made when staging a model stay links.
    root = Path(os.path.normpath(model_dir.absolute()))
    file = Path(os.path.normpath(root / unquote(name)))
    if not file.is_relative_to(root) or file == root:
        raise UnsupportedModelError(f"TF.js weight shard {name!r} lies outside the model folder")
    return file


def _classify_hdf5(path: Path) -> ModelFormat:
    import h5py  # light, and only needed for HDF5 files

    try:
        with h5py.File(path, "r") as h5:
            attrs = set(h5.attrs.keys())
            groups = set(h5.keys())
    except OSError as error:
        raise UnsupportedModelError("the HDF5 file is damaged or truncated") from error
    if "model_config" in attrs:
        return ModelFormat.KERAS_H5
    if "layer_names" in attrs or "layers" in groups or "_layer_checkpoint_dependencies" in groups:
        raise UnsupportedModelError(
            "this file holds weights only; send the model saved with model.save(...) "
            "(a .keras or full .h5 file), which includes its architecture"
        )
    raise UnsupportedModelError("this HDF5 file is not a Keras model (no model configuration in it)")


def _is_keras_v3_zip(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False
    return fmt.KERAS_V3_CONFIG in names and (fmt.KERAS_V3_WEIGHTS in names or "metadata.json" in names)


def _as_text(head: bytes) -> str | None:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        # A cut multi-byte character at the end of the head is still text.
        try:
            text = head[:-4].decode("utf-8")
        except UnicodeDecodeError:
            return None
    if any(ch in text for ch in "\x00\x01\x02\x03\x04\x05\x06\x07\x08\x0e\x0f"):
        return None
    return text


def _detect_text(path: Path, text: str, size: int, work_dir: Path) -> ModelSource:
    stripped = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")).lstrip()
    if stripped.startswith("{"):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError):
            data = None
        if isinstance(data, dict) and ("modelTopology" in data or "weightsManifest" in data):
            # A TF.js model's JSON given by path (CLI), its shards beside it.
            return _tfjs_source(path, path, tree_size(path.parent), staging=work_dir)
        raise UnsupportedModelError("this is a JSON file, not a model")
    if stripped.startswith(("node {", "node{")):
        return ModelSource(ModelFormat.FROZEN_GRAPH_TEXT, path, path, size)
    if stripped.startswith(("saved_model_schema_version", "meta_graphs")):
        raise UnsupportedModelError(
            "text SavedModels (saved_model.pbtxt) are not supported; send the SavedModel folder as a .zip"
        )
    raise UnsupportedModelError("this is a text file, not a model")


def _first_fields(data: bytes) -> tuple[list[tuple[int, int]], bool]:
    """The first top-level fields as (number, wire type), and whether the bytes end mid-field."""
    fields: list[tuple[int, int]] = []
    try:
        for field, wire_type, _, _ in top_level_fields(memoryview(data)):
            fields.append((field, wire_type))
            if len(fields) >= CLASSIFY_FIELDS:
                break
    except WireFormatError as error:
        if not (error.truncated and fields):
            raise _not_a_model() from error
        return fields, True
    return fields, False


def _detect_protobuf(path: Path, size: int) -> ModelSource:
    # Classify from the first fields only: a 100 MB graph is parsed once, by inspection.
    data = path.read_bytes()
    fields, truncated = _first_fields(data)
    numbers = {field for field, _ in fields}
    if not numbers:
        raise _not_a_model()
    if numbers <= {1, 2} and all(w == (VARINT if f == 1 else LENGTH_DELIMITED) for f, w in fields):
        if truncated:
            raise UnsupportedModelError("this SavedModel file is truncated; send it again")
        try:
            meta_graphs = parse_saved_model(data)
        except (WireFormatError, DecodeError, RuntimeError):
            meta_graphs = []
        if meta_graphs and any(m.graph_def.node for m in meta_graphs):
            raise UnsupportedModelError(
                "this is a SavedModel's saved_model.pb, not a frozen graph, and it is missing its variables/ "
                "folder; send the whole SavedModel folder as a .zip or .tar.gz"
            )
    if numbers <= META_GRAPH_FIELDS and fields[0] == (1, LENGTH_DELIMITED) and (3, LENGTH_DELIMITED) in fields:
        # A GraphDef's field 3 is a number (its old version); a MetaGraphDef's is the Saver's saver_def.
        return _detect_meta_graph(path, truncated)
    if numbers <= GRAPH_DEF_FIELDS and fields[0] == (1, LENGTH_DELIMITED):
        if truncated:
            raise _truncated_graph()
        return ModelSource(ModelFormat.FROZEN_GRAPH, path, path, size)
    if numbers <= ONNX_FIELDS and (7 in numbers or 8 in numbers) and fields[0] == (1, VARINT):
        raise UnsupportedModelError("this is an ONNX model; convbot converts TensorFlow models only")
    if truncated:
        raise UnsupportedModelError("the file is truncated or damaged; send it again")
    raise _not_a_model()


def _detect_meta_graph(path: Path, truncated: bool) -> ModelSource:
    """A TF1 checkpoint's .meta given by path (CLI): its .index and .data files must be beside it."""
    if truncated:
        raise UnsupportedModelError("the TF1 checkpoint's .meta graph is truncated; send it again")
    read_meta_graph(path)
    if not path.name.endswith(META_SUFFIX):
        raise UnsupportedModelError(
            f"this is a TF1 checkpoint's .meta graph without its weights; {SEND_CHECKPOINT_FILES}"
        )
    _check_checkpoint_files(path)
    return ModelSource(ModelFormat.TF1_CHECKPOINT, path, path, _checkpoint_size(path))


def _truncated_graph() -> UnsupportedModelError:
    return UnsupportedModelError("the graph file is truncated (it ends in the middle of a node); send it again")


def _not_a_model() -> UnsupportedModelError:
    return UnsupportedModelError(
        "not a model convbot can read; send a frozen graph (.pb), a Keras model (.h5/.keras), or a SavedModel, "
        "TF.js graph model or TF1 checkpoint as one .zip/.tar.gz"
    )

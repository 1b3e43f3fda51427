"""Turn TensorFlow's long, raw converter errors into one line a user can act on."""

from __future__ import annotations

import re

from converter.formats import Target

# (pattern in the raw log, message). First match wins; `{ops}` is filled with the ops found.
KNOWN_FAILURES: tuple[tuple[str, str], ...] = (
    (
        r"requires element_shape to be static",
        "the model uses TensorList ops (an LSTM or map_fn) that need a static batch size; "
        "give every input a fixed shape with --shape",
    ),
    (
        r"None is only supported in the 1st dimension",
        "an input has an unknown size past the batch; give it with --shape",
    ),
    (
        r"_get_save_spec",
        "Keras 3 models cannot go through the old TFLite Keras path; export a SavedModel and send that",
    ),
    (
        r"exceeds maximum protobuf size|larger than 2GB|2GB",
        "the model is over the 2 GB limit of TFLite files and GraphDefs; it cannot be converted as one file",
    ),
    (r"Unsupported Ops in the model[^\n]*?:\s*([^\n]+)", "TF.js does not support these ops: {ops}"),
    (
        r"(?:not supported by the Flex runtime|ops that can be supported by the flex runtime|custom ops)",
        "TFLite cannot convert some ops even with Select TF ops (custom ops); see the log",
    ),
    (
        r"Failed to functionalize Control Flow V1 ops",
        "TFLite cannot convert this graph's TF1 control flow (while/cond)",
    ),
    (r"Unable to find tensor|Invalid tensors '([^']+)'", "TFLite could not find a chosen node: {ops}"),
    (r"Killed|MemoryError|std::bad_alloc", "the conversion ran out of memory"),
)


def unsupported_tflite_ops(log: str) -> list[str]:
    """TF op names the TFLite converter said it cannot lower to builtins."""
    ops = re.findall(r"'?tf\.([A-Za-z0-9_]+)'?(?: op)?", log)
    return sorted(set(ops))


def explain_failure(target: Target, log: str) -> str:
    """A one-line message for a failed conversion to `target`."""
    label = "TFLite" if target is Target.TFLITE else "TF.js"
    for pattern, message in KNOWN_FAILURES:
        match = re.search(pattern, log)
        if match:
            ops = match.group(1).strip() if match.groups() and match.group(1) else ""
            return f"{label}: {message.format(ops=ops)}"
    return f"{label} conversion failed: {_last_meaningful_line(log)}"


def _last_meaningful_line(log: str) -> str:
    for line in reversed(log.strip().splitlines()):
        line = line.strip()
        if line and not line.startswith(("File ", "^", "~", "During handling", "Traceback")):
            return line[:200]
    return "no details (see the log)"

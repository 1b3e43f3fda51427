"""The quantization figures issue 14 asks for, as a user gets them from the command line: int8 and int8-io on the
FER Keras model (tests/data) and on a MobileNet-class frozen graph made in bench/quant_models.py, calibrated on a
labelled image set made there too (one folder per class: the top-1 agreement), then `--quant auto` with the same
samples for TFLite and TF.js, its table and its picture.

Run: .venv/bin/python -m bench.quantization_figures [--per-class 40] [--keep DIR]
Prints each command and what convbot printed, as a transcript.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.jobs_common import MODEL as FER_MODEL
from bench.quant_models import CLASSES, write_labelled_zip, write_small_mobilenet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--per-class", type=int, default=40, help="images per class in the calibration zip")
    parser.add_argument("--keep", type=Path, help="write the models, images and outputs here (kept)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        photos = write_labelled_zip(root / "photos.zip", args.per_class)
        # 4 times the tests' width (32 to 256 channels, 0.3 MB of float32 weights): big enough that a file's
        # size is mostly its weights, as in a real MobileNet, so the variants' sizes compare as they would there.
        mobilenet = write_small_mobilenet(root / "mobilenet.pb", width=4)
        print(f"calibration: photos.zip, {args.per_class} PNG images in each of {len(CLASSES)} class folders\n")
        for model in (FER_MODEL, mobilenet):
            for quant in ("int8", "int8-io"):
                convbot(
                    root, model, "--to", "tflite", "--quant", quant, "--calibration", photos.name,
                    "--input-range", "0,1", "-o", f"{model.stem}_{quant}",
                )  # fmt: skip
            convbot(
                root, model, "--to", "tflite,tfjs", "--quant", "auto", "--calibration", photos.name,
                "--input-range", "0,1", "--plot", f"{model.stem}_auto.png", "-o", f"{model.stem}_auto",
            )  # fmt: skip


def convbot(root: Path, model: Path, *args: str) -> None:
    """Run `convbot convert` in `root` as a user would, and print the command and its output."""
    local = root / model.name
    if not local.exists():
        local.symlink_to(model.resolve())
    command = ["convbot", "convert", model.name, *args]
    print("$ " + shlex.join(command), flush=True)
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", *command[1:]], cwd=root, capture_output=True, text=True, check=False
    )
    print(done.stdout.rstrip())
    if done.returncode not in (0, 2):  # 2: a check failed, which the output says
        print(done.stderr.rstrip())
    print(f"(exit {done.returncode})\n", flush=True)


if __name__ == "__main__":
    main()

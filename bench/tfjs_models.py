"""Validation figures of every TF.js graph model in a folder, converted to TFLite and a frozen graph
through the CLI (`convbot convert --json`) and through the bot (the real `convbot run` process
against the fake Bot API on 127.0.0.1, the model sent as one zip), in the same run.

Run: .venv/bin/python -m bench.tfjs_models [--models ../shared/models/tfjs] [--only rvm,emotion]
Prints, per model, route and artifact: the verdict and the worst output's error against the
original model run in TF.js, and the wall time of each conversion.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.tfjs_model_shapes import SHAPES
from bot.fake_api.driver import BotProcess, FakeApiThread, user
from cli.render import table

ROOT = Path(__file__).resolve().parents[1]
TARGETS = "tflite,pb"
CAPTION = re.compile(r"(passed|failed|not run|error), max error ([0-9.e+-]+) \(([0-9.e+-]+) of scale\)")


@dataclass
class Row:
    model: str
    route: str
    target: str
    status: str
    max_abs: str
    max_rel: str
    seconds: float

    def cells(self) -> list[str]:
        return [self.model, self.route, self.target, self.status, self.max_abs, self.max_rel, f"{self.seconds:.1f}"]


def model_folders(root: Path, only: set[str]) -> list[Path]:
    folders = sorted(p.parent for p in root.glob("*/model.json"))
    return [f for f in folders if not only or _name(f) in only]


def _name(folder: Path) -> str:
    return folder.name.removeprefix("tfjs_")


def via_cli(folder: Path, out: Path) -> list[Row]:
    command = [sys.executable, "-m", "cli.main", "convert", str(folder), "--to", TARGETS, "-o", str(out), "--json"]
    for shape in SHAPES.get(_name(folder), ()):
        command += ["--shape", shape]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        return [Row(_name(folder), "cli", TARGETS, "error: " + done.stderr.strip()[-120:], "", "", seconds)]
    rows = []
    for check in json.loads(done.stdout)["validation"]:
        worst = max(check["outputs"], key=lambda o: o["max_rel_error"]) if check["outputs"] else None
        rows.append(
            Row(
                _name(folder),
                "cli",
                check["target"],
                check["status"],
                f"{worst['max_abs_error']:.2e}" if worst else "",
                f"{worst['max_rel_error']:.2e}" if worst else "",
                seconds,
            )
        )
    return rows


def via_bot(folders: list[Path], work: Path) -> list[Row]:
    fake = FakeApiThread()
    bot = BotProcess(fake.api.root_url, work / "data", work / "bot.log", allowed_users="1", job_timeout_seconds="900")
    rows = []
    try:
        fake.wait_for(method="setMyCommands", timeout=180)
        sender = user(1)
        for folder in folders:
            upload = work / f"{_name(folder)}.zip"
            with zipfile.ZipFile(upload, "w") as archive:
                for file in folder.iterdir():
                    archive.write(file, f"{_name(folder)}/{file.name}")
            since = fake.mark()
            fake.do(fake.api.user_sends_document, sender, upload.read_bytes(), upload.name)
            fake.wait_for_text(1, "Suggested outputs", since=since, timeout=120)
            command = " ".join(["/convert", TARGETS, *(f"shape={s}" for s in SHAPES.get(_name(folder), ()))])
            since = fake.mark()
            started = time.perf_counter()
            fake.do(fake.api.user_sends_text, sender, command)
            fake.wait_for(_job_ended, since=since, timeout=900)
            seconds = time.perf_counter() - started
            sent = fake.do(lambda start: fake.api.sent[start:], since)
            documents = [a.document for a in sent if a.document is not None]
            for document in documents:
                found = CAPTION.search(document.caption or "")
                target = "tflite" if document.file_name.endswith(".tflite") else "pb"
                status, max_abs, max_rel = found.groups() if found else ((document.caption or "?")[:60], "", "")
                rows.append(Row(_name(folder), "bot", target, status, max_abs, max_rel, seconds))
            if not documents:
                rows.append(Row(_name(folder), "bot", TARGETS, "no files sent", "", "", seconds))
    finally:
        bot.stop()
        fake.close()
    return rows


def _job_ended(action: Any) -> bool:
    text = action.text or ""
    return bool(action.chat_id == 1 and (" report" in text or re.search(r"Job #\d+ failed", text)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", type=Path, default=ROOT / "tests" / "data", help="a folder of TF.js model folders")
    parser.add_argument("--only", default="", help="comma-separated model names")
    args = parser.parse_args()
    folders = model_folders(args.models, {n for n in args.only.split(",") if n})
    with tempfile.TemporaryDirectory(prefix="convbot-bench-") as tmp:
        rows = [row for folder in folders for row in via_cli(folder, Path(tmp) / "cli" / _name(folder))]
        rows += via_bot(folders, Path(tmp))
    rows.sort(key=lambda r: (r.model, r.target, r.route))
    headers = ["model", "route", "target", "status", "max abs err", "rel to scale", "seconds"]
    print("TF.js graph models -> TFLite and frozen graph, each checked against the original run in TF.js")
    print(table(headers, [row.cells() for row in rows]))


if __name__ == "__main__":
    main()

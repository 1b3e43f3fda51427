"""Console mode through a pseudo-terminal, as a newcomer without a bot token would use it."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

import pexpect

ROOT = Path(__file__).resolve().parents[2]


def test_console_upload_convert_and_get_files(multihead_graph: Any, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVBOT_")}
    env.update({"CONVBOT_DATA_DIR": str(tmp_path / "data"), "TF_CPP_MIN_LOG_LEVEL": "2", "TERM": "xterm"})
    console = pexpect.spawn(
        sys.executable,
        ["-m", "cli.main", "run"],
        cwd=str(ROOT),
        env=env,
        encoding="utf-8",
        timeout=60,
        dimensions=(50, 200),
    )
    console.logfile_read = (tmp_path / "console.txt").open("w")
    try:
        console.expect("console mode|console: a chat")
        console.expect_exact("you> ")
        console.sendline(f"/upload {multihead_graph.path}")
        console.expect(r"\[(\d+)\] Convert now")
        convert_button = console.match.group(1)
        console.expect_exact("you> ")
        console.sendline(convert_button)
        saved = set()
        while len(saved) < 2:
            console.expect(r"saved: (\S+)", timeout=300)  # the worker imports TensorFlow first
            saved.add(Path(console.match.group(1)))
        assert {path.name for path in saved} == {"pose.tflite", "pose_tfjs.zip"}
        for path in saved:
            assert path.is_file() and path.parent == (tmp_path / "data" / "console").resolve()
        assert (tmp_path / "data" / "console" / "pose.tflite").read_bytes()[4:8] == b"TFL3"
        console.expect("report")
        console.sendline("/jobs")
        console.expect(r"#1 pose\.pb → tflite,tfjs: succeeded")
        console.sendline("/quit")
        console.expect("bye", timeout=60)
        console.expect(pexpect.EOF, timeout=60)
    finally:
        console.close(force=True)
        console.logfile_read.close()
    transcript = (tmp_path / "console.txt").read_text()
    assert "Traceback" not in transcript
    assert re.search(r"Check: passed", transcript)

"""`convbot worker` processes for the tests: each one a machine of its own (its own process group, data
folder and log), sharing only the broker and the S3 storage with the bot."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.convbot_workers import start_worker_process

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Worker:
    """One `convbot worker` with one warm process, in its own process group, data folder and log."""

    name: str
    folder: Path
    broker_url: str
    storage: dict[str, str]  # the S3 storage's variables: nothing passes through a shared disk
    settings: dict[str, str] = field(default_factory=dict)  # more of its environment (CONVBOT_JOB_MEMORY_MB...)
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            **self.storage,
            "CONVBOT_BROKER_URL": self.broker_url,
            "CONVBOT_WORKERS": "1",
            "CONVBOT_DATA_DIR": str(self.folder / "data"),
            "CONVBOT_TEST_HOOK": "slow@slow_",  # models named slow_* sleep 10 s before converting
            **self.settings,
        }
        self.process = start_worker_process(self.folder, env)

    def holds(self, pid: int) -> bool:
        return self.process is not None and self.process.poll() is None and os.getpgid(pid) == self.process.pid

    def kill_group(self) -> None:
        """The machine is lost: every process of the worker SIGKILLed at once."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def log(self) -> str:
        logs = [self.folder / "worker.out", self.folder / "data" / "logs" / "worker.log"]
        return "\n".join(path.read_text(errors="replace") for path in logs if path.exists())


@contextmanager
def two_machines(root: Path, broker_url: str, storage: dict[str, str]) -> Iterator[list[Worker]]:
    """Two workers, "a" and "b", started together (each imports TensorFlow) and killed at the end."""
    started = [Worker(name, root / name, broker_url, storage) for name in ("a", "b")]
    for worker in started:
        worker.start()
    try:
        yield started
    finally:
        for worker in started:
            worker.kill_group()


def wait_until(condition: Any, timeout: float, what: str) -> Any:
    """The first true value of `condition()`, polled until `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def process_alive(pid: int) -> bool:
    """A process that runs (a killed child its parent has not reaped yet is a zombie: not alive)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status

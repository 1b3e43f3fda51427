"""`convbot worker` processes for the benches of the distributed path, each as a machine of its own.

Each worker is one `python -m cli.main worker` with CONVBOT_WORKERS=1, in its own process group and data folder,
given only what a conversion machine gets: the broker, the storage and the S3 credentials (no database, no
token). The benches and a private Redis and SeaweedFS (bench/servers.py) run on this one machine.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from bench.servers import SeaweedS3

ROOT = Path(__file__).resolve().parents[1]
STOP_SECONDS = 30.0


@dataclass
class Fleet:
    """The broker and storage every worker and the bot's side use, and the workers started so far."""

    broker_url: str
    storage: SeaweedS3
    storage_prefix: str
    folder: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def storage_url(self) -> str:
        return f"s3://{self.storage.bucket}/{self.storage_prefix}"

    def settings(self) -> dict[str, str]:
        """The job service's settings that send its jobs to these workers (as `load_settings` overrides)."""
        return {
            "broker_url": self.broker_url,
            "storage_url": self.storage_url,
            "s3_endpoint_url": self.storage.endpoint_url,
        }

    def environment(self) -> dict[str, str]:
        """What a conversion machine is given: nothing of this process's CONVBOT_* settings or AWS profile."""
        kept = {k: v for k, v in os.environ.items() if not k.startswith(("CONVBOT_", "AWS_"))}
        return {
            **kept,
            **self.storage.environment(),
            "PYTHONPATH": str(ROOT),
            "CONVBOT_BROKER_URL": self.broker_url,
            "CONVBOT_STORAGE_URL": self.storage_url,
            "CONVBOT_S3_ENDPOINT_URL": self.storage.endpoint_url,
            "CONVBOT_WORKERS": "1",
        }

    def grow_to(self, count: int) -> None:
        """Start workers until `count` run (each imports TensorFlow in its conversion process: 10-30 s)."""
        while len(self.processes) < count:
            folder = self.folder / f"worker{len(self.processes)}"
            environment = {**self.environment(), "CONVBOT_DATA_DIR": str(folder / "data")}
            self.processes.append(start_worker_process(folder, environment))

    def stop(self) -> None:
        """Celery's warm shutdown on SIGTERM, then SIGKILL to whatever of a worker's group is left."""
        for process in self.processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            with contextlib.suppress(subprocess.TimeoutExpired):  # a worker still converting: killed below
                process.wait(STOP_SECONDS)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        self.processes.clear()


def start_worker_process(folder: Path, environment: dict[str, str]) -> subprocess.Popen[bytes]:
    """`convbot worker` run in `folder` with exactly `environment`, its output appended to folder/worker.out,
    in a process group of its own: stopped or killed whole, as a machine is (the benches' and the tests')."""
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "worker.out").open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "cli.main", "worker"],
            cwd=folder,
            env=environment,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

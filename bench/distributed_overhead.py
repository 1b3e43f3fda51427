"""What the distributed path adds to a job: the same model and options through the local pool and through one
`convbot worker` (Celery over a private Redis, uploads and artifacts in a private SeaweedFS S3), alternately in
one run, results cache off, each side with one warm conversion process.

Each figure is submit -> the job's end as the job service sees it (`wait`), the median over the rounds; the
first job on each side is a warm-up and is not counted. Goal (issue 13): under 0.5 s added.
Run: .venv/bin/python -m bench.distributed_overhead [--rounds 7]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.convbot_workers import Fleet
from bench.jobs_common import MODEL, upload_for, warm_service
from bench.servers import RedisServer, SeaweedServer
from converter.options import ConversionOptions
from jobs.events import EventKind, JobEvent, Stage
from jobs.service import JobService

GOAL_SECONDS = 0.5


@dataclass
class Side:
    """One path under test: its service, its user's upload and, per job, when its conversion began."""

    service: JobService
    upload: tuple[int, int]
    began: dict[int, float] = field(default_factory=dict)  # job id -> the converter's first stage, perf_counter

    @classmethod
    def of(cls, service: JobService) -> Side:
        side = cls(service, upload_for(service, 1))
        service.subscribe(side._record)
        return side

    def _record(self, event: JobEvent) -> None:
        # "loading" is the service's own (it marks the job started); the next stage comes from the converter
        if event.kind == EventKind.STAGE and event.stage == Stage.LOAD_TENSORFLOW:
            self.began.setdefault(event.job_id, time.perf_counter())

    def timed_job(self, options: ConversionOptions) -> tuple[float, float, dict[str, float]]:
        """(submit -> the job's end, submit -> its conversion began, the converter's own stage times) in s."""
        started = time.perf_counter()
        job_id = self.service.submit(*self.upload, options)
        view = self.service.wait(job_id, timeout=600)
        elapsed = time.perf_counter() - started
        if view.status != "succeeded":
            raise RuntimeError(f"job {view.id}: {view.status}: {view.error_message}")
        return elapsed, self.began[job_id] - started, dict(view.result["timings"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    options = ConversionOptions()  # as bench.job_overhead: TFLite and TF.js, each verified
    redis, seaweed = RedisServer.start(), SeaweedServer.start(bucket="convbot-bench")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            fleet = Fleet(redis.url, seaweed.s3, "overhead", root / "workers")
            os.environ.update(seaweed.s3.environment())  # the bot's side signs its S3 requests with these
            try:
                fleet.grow_to(1)
                local = warm_service(root / "local", 1)
                remote = warm_service(root / "remote", 1, **fleet.settings())
                try:
                    timings = compare(local, remote, options, args.rounds)
                finally:
                    local.stop()
                    remote.stop()
            finally:
                fleet.stop()
    finally:
        seaweed.stop()
        redis.stop()
    report(timings, args.rounds)


def compare(local: JobService, remote: JobService, options: ConversionOptions, rounds: int) -> dict[str, Timings]:
    sides = {"pool": Side.of(local), "workers": Side.of(remote)}
    timings: dict[str, Timings] = {name: Timings() for name in sides}
    for side in sides.values():
        side.timed_job(options)  # warm-up: lazy imports, the TF.js runner's Node.js process
    for _ in range(rounds):  # alternating: the machine's load (other users of its 2 cores) falls on both
        for name, side in sides.items():
            total, to_start, stages = side.timed_job(options)
            timings[name].total.append(total)
            timings[name].to_start.append(to_start)
            timings[name].converting.append(sum(stages.values()))
            for stage, seconds in stages.items():
                timings[name].stages.setdefault(stage, []).append(seconds)
    return timings


@dataclass
class Timings:
    total: list[float] = field(default_factory=list)  # submit -> the job's end
    to_start: list[float] = field(default_factory=list)  # submit -> the converter's first stage
    converting: list[float] = field(default_factory=list)  # the converter's own stage timings, summed
    stages: dict[str, list[float]] = field(default_factory=dict)  # each of the converter's stages

    def line(self) -> str:
        total, to_start = statistics.median(self.total), statistics.median(self.to_start)
        return (
            f"{total:.2f} s (to start {to_start:.2f} s, converter's own stages {statistics.median(self.converting):.2f}"
            f" s)   all: {_list(self.total)}"
        )


def report(timings: dict[str, Timings], rounds: int) -> None:
    pool, workers = timings["pool"], timings["workers"]
    added = [w - p for p, w in zip(pool.total, workers.total, strict=True)]
    added_median = statistics.median(workers.total) - statistics.median(pool.total)
    added_to_start = statistics.median(workers.to_start) - statistics.median(pool.to_start)
    added_converting = statistics.median(workers.converting) - statistics.median(pool.converting)
    rest = added_median - added_to_start - added_converting
    print(
        f"model: {MODEL.name}, targets tflite+tfjs with verification, results cache off, {rounds} rounds, alternating"
    )
    print(f"local pool, data folder (median):            {pool.line()}")
    print(f"convbot worker, Redis + S3 storage (median): {workers.line()}")
    print(
        f"added by the distributed path: {added_median:+.2f} s (median of each round's difference "
        f"{statistics.median(added):+.2f} s); goal under {GOAL_SECONDS} s"
    )
    print(
        f"  of which before the conversion began {added_to_start:+.2f} s, in the converter's own stages "
        f"{added_converting:+.2f} s, the rest (events, files, the job's end) {rest:+.2f} s"
    )
    print("  the converter's stages, median on each side (pool / worker):")
    for stage in pool.stages:
        mine, theirs = statistics.median(pool.stages[stage]), statistics.median(workers.stages.get(stage, [0.0]))
        print(f"    {stage:<22} {mine:.2f} / {theirs:.2f} s  ({theirs - mine:+.2f})")


def _list(values: list[float]) -> str:
    return " ".join(f"{v:.2f}" for v in values)


if __name__ == "__main__":
    main()

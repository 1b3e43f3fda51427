"""Jobs per minute on the distributed path with 1, 2 and 4 `convbot worker` processes (one conversion process
each, as 1, 2 and 4 machines of one core would be), on a private Redis and SeaweedFS S3, results cache off.

Each step queues the same number of small jobs (TFLite + verification of the bench model) from as many users as
there are workers (the bot runs one job per user at a time), then waits for the last one.
Run: .venv/bin/python -m bench.distributed_throughput [--jobs 12] [--workers 1,2,4]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from bench.convbot_workers import Fleet
from bench.jobs_common import MODEL, upload_for, wait_for_slots, warm_service
from bench.servers import RedisServer, SeaweedServer
from converter.formats import Target
from converter.options import ConversionOptions
from jobs.service import JobService

TFLITE_ONLY = ConversionOptions(targets=(Target.TFLITE,))
NOTE = """\
What this machine can and cannot show: it has 2 cores, shared with other users. The workers, the bot's side,
Redis and SeaweedFS all run on them. A conversion does not keep a core busy all the time (it waits on files, on
the TF.js runner, on the broker), so more processes than cores can still gain here; but past 2 the figure
measures sharing 2 cores, not what 4 machines would give. What it does show: the bot keeps every worker busy
(jobs go out as slots free up), and what a job costs on the distributed path. What it cannot show: scaling
over machines, a network between the bot, Redis, S3 and the workers (here all loopback), or large models
(each upload and artifact crosses the storage: on a network, size / bandwidth more per job). On N machines
the 1-worker figure times the conversion processes is the ceiling, while the bot keeps up (README, "More than
one machine")."""


def jobs_per_minute(service: JobService, uploads: list[tuple[int, int]], jobs: int) -> tuple[float, float]:
    """Submit `jobs` jobs round-robin over the users, wait for all; (jobs per minute, seconds)."""
    began = time.perf_counter()
    submitted = [service.submit(*uploads[n % len(uploads)], TFLITE_ONLY) for n in range(jobs)]
    for job_id in submitted:
        view = service.wait(job_id, timeout=1200)
        if view.status != "succeeded":
            raise RuntimeError(f"job {job_id}: {view.status}: {view.error_message}")
    elapsed = time.perf_counter() - began
    return jobs / elapsed * 60, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=12, help="jobs per step")
    parser.add_argument("--workers", default="1,2,4", help="worker processes at each step, growing")
    args = parser.parse_args()
    steps = sorted(int(n) for n in args.workers.split(","))
    print(f"{args.jobs} jobs per step (TFLite + verification of {MODEL.name}), results cache off")
    redis, seaweed = RedisServer.start(), SeaweedServer.start(bucket="convbot-bench")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            fleet = Fleet(redis.url, seaweed.s3, "throughput", root / "workers")
            os.environ.update(seaweed.s3.environment())  # the bot's side signs its S3 requests with these
            try:
                fleet.grow_to(steps[0])
                service = warm_service(root / "bot", steps[0], **fleet.settings())
                try:
                    uploads = [upload_for(service, 100 + n) for n in range(steps[-1])]
                    for count in steps:
                        fleet.grow_to(count)  # the workers of the last step stay: they join, like machines
                        wait_for_slots(service, count)
                        # warm-up, not counted: one job for each idle worker, whose first job pays lazy imports
                        jobs_per_minute(service, uploads[:count], count)
                        per_minute, elapsed = jobs_per_minute(service, uploads[:count], args.jobs)
                        print(
                            f"{count} worker process(es): {per_minute:.1f} jobs/min ({args.jobs} jobs in "
                            f"{elapsed:.1f} s, {elapsed / args.jobs * count:.1f} s per job per worker)"
                        )
                finally:
                    service.stop()
            finally:
                fleet.stop()
    finally:
        seaweed.stop()
        redis.stop()
    print(NOTE)


if __name__ == "__main__":
    main()

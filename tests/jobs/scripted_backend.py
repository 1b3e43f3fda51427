"""An ExecutionBackend whose jobs do what the test says, so the job service's scheduling is tested in
milliseconds and without TensorFlow.

    backend = ScriptedBackend(slots=1)
    service = JobService(settings, session_factory, backend)
    service.start(dispatch=False)
    job_id = service.submit(user_id, model_id, options)
    service.dispatch_once()                      # the job starts: backend.started == [job_id]
    backend.progress(job_id, "convert_tflite")
    backend.finish(job_id, tflite_result(backend.arguments[job_id], settings.data_dir))
    service.dispatch_once()                      # the service hears both, in order

Each call queues what a real worker would report; `poll` plays the queue back in order.
"""

from __future__ import annotations

import signal
from dataclasses import replace
from pathlib import Path

from converter.conversion import artifact_stem
from converter.formats import ModelFormat, Quantization, Target
from converter.isolation import how_it_died
from converter.result import PASSED, Artifact, ArtifactCheck, ConversionResult, OutputCheck
from converter.summary import TensorSpec
from jobs.backend import BackendEvent, ExecutionBackend
from jobs.events import FailureReason
from jobs.job_conversion import JobArguments
from jobs.storage import FolderStorage, artifact_key


class ScriptedBackend(ExecutionBackend):
    """Runs nothing: records the jobs the service starts and reports what the test scripts for them."""

    def __init__(self, slots: int = 1) -> None:
        self.slots = slots  # how many jobs may run at once; a test may change it at any time
        self.started: list[int] = []  # job ids, in the order the service started them
        self.arguments: dict[int, JobArguments] = {}  # job id -> what the service sent
        self.killed: dict[int, str] = {}  # job id -> the reason the service gave
        self.running: set[int] = set()  # started, and their end not yet polled
        self.is_started = False
        self._script: list[BackendEvent] = []

    # -- what the service calls

    def start(self) -> None:
        self.is_started = True

    def stop(self) -> None:
        self.is_started = False

    def free_slots(self) -> int:
        return max(0, self.slots - len(self.running))

    def start_job(self, arguments: JobArguments) -> None:
        job_id = arguments.job_id
        # The real pool cannot start more jobs than it has idle workers, nor one job twice.
        assert self.is_started, "a job was started on a backend that is not started"
        assert self.free_slots() > 0, f"job {job_id} was started with no free slot"
        assert job_id not in self.running, f"job {job_id} was started while it runs"
        self.started.append(job_id)
        self.arguments[job_id] = arguments
        self.running.add(job_id)

    def kill(self, job_id: int, reason: FailureReason) -> None:
        if job_id in self.running:  # as the pool does: the killed job's `failed` event follows
            self.killed[job_id] = reason
            self._report(BackendEvent(job_id, "failed", message=str(reason), reason=reason))

    def poll(self, timeout: float) -> list[BackendEvent]:
        """Everything scripted since the last poll; never waits, since nothing else can happen."""
        events, self._script = self._script, []
        for event in events:
            if event.kind in ("done", "failed"):
                self.running.discard(event.job_id)
        return events

    # -- what the test scripts

    def progress(self, job_id: int, stage: str) -> None:
        """The job reached a converter stage (a raw stage name: "convert_tflite", "validate", ...)."""
        self._report(BackendEvent(job_id, "progress", stage=stage))

    def artifact(self, job_id: int, artifact: Artifact, check: ArtifactCheck | None) -> None:
        """One file of the job is written and checked, ready to send."""
        self._report(BackendEvent(job_id, "artifact", result=(artifact, check)))

    def finish(self, job_id: int, result: ConversionResult) -> None:
        self._report(BackendEvent(job_id, "done", result=result))

    def fail(self, job_id: int, message: str, log: str = "") -> None:
        """The conversion raised: `message` is what the user is told."""
        self._report(BackendEvent(job_id, "failed", message=message, log=log))

    def lose(self, job_id: int) -> None:
        """The job's worker died under it (killed by the kernel), as the pool reports that."""
        message = f"the converter {how_it_died(-signal.SIGKILL)}"
        self._report(
            BackendEvent(
                job_id, "failed", message=message, reason=FailureReason.CRASH, reason_args={"cause": "SIGKILL"}
            )
        )

    def _report(self, event: BackendEvent) -> None:
        assert event.job_id in self.running, f"job {event.job_id} is not running: it cannot report {event.kind}"
        self._script.append(event)


def tflite_artifact(arguments: JobArguments, data_dir: Path) -> tuple[Artifact, ArtifactCheck]:
    """A small `.tflite` file stored where the job's artifacts go (the data folder's storage), its path the
    storage key as a worker reports it, and a passed check for it."""
    key = artifact_key(arguments.job_id, f"{artifact_stem(Path(arguments.model_name))}.tflite")
    path = FolderStorage(data_dir).path(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"TFL3 scripted model")  # not a runnable model: no test here runs it
    artifact = replace(Artifact.from_path(Target.TFLITE, path, Quantization.NONE), path=key)
    check = ArtifactCheck(
        Target.TFLITE,
        Quantization.NONE,
        PASSED,
        "the outputs match the source model",
        1e-5,
        outputs=(OutputCheck("logits", 1e-7, 1e-7, True),),
    )
    return artifact, check


def tflite_result(arguments: JobArguments, data_dir: Path) -> ConversionResult:
    """A conversion that produced one checked `.tflite` file, as a worker's run_job returns it."""
    artifact, check = tflite_artifact(arguments, data_dir)
    return ConversionResult(
        source=arguments.model_key,
        format=ModelFormat.FROZEN_GRAPH,
        inputs=(TensorSpec("image", "float32", (1, 4)),),
        outputs=(TensorSpec("logits", "float32", (1, 2)),),
        artifacts=(artifact,),
        timings={"convert_tflite": 0.01, "validate": 0.01},
        versions={"tensorflow": "scripted"},
        validation=(check,),
    )

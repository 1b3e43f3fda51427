"""What the job service tells its subscribers: the kinds of events, the stages a job goes through and
why a job failed, as enums that readers (the bot's texts, the CLI) key by instead of matching words.

StrEnums: each member equals its string value, so comparisons with plain strings keep working and the
values stored in the database and logged stay the same strings as before.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class EventKind(StrEnum):
    QUEUED = "queued"
    STAGE = "stage"
    ARTIFACT = "artifact"  # one file converted and checked, sent before the job ends
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"  # a restart of the bot stopped it; it is queued again
    WORKER_LOST = "worker_lost"  # the conversion machine running it was lost; it is queued again
    WAITING_FOR_CONVERTER = "waiting_for_converter"  # queued while no conversion worker is alive


FINAL_KINDS = (EventKind.SUCCEEDED, EventKind.FAILED, EventKind.CANCELLED)


class Stage(StrEnum):
    """The stage ids the converter reports as it goes (converter.conversion.STAGES; a test keeps both equal)."""

    LOADING = "loading"
    LOAD_TENSORFLOW = "load_tensorflow"
    LOAD = "load"
    CONVERT_TFLITE = "convert_tflite"
    VALIDATE = "validate"
    CONVERT_TFJS = "convert_tfjs"
    CONVERT_TFJS_LAYERS = "convert_tfjs_layers"
    WRITE_PB = "write_pb"
    WRITE_SAVED_MODEL = "write_saved_model"


class JobPhase(StrEnum):
    """Where a job is when no converter stage runs."""

    QUEUED = "queued"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class FailureReason(StrEnum):
    CONVERSION_ERROR = "conversion_error"  # the converter's own message says why
    TIMEOUT = "timeout"  # with the limit in seconds
    MEMORY = "memory"  # with the limit in MB
    CRASH = "crash"  # the worker process died; with its signal or exit code
    INTERRUPTED_TWICE = "interrupted_twice"  # two restarts while it ran
    CANCELLED = "cancelled"  # the user's cancel killed its worker


@dataclass(frozen=True)
class JobEvent:
    """A change a user may want to hear about."""

    job_id: int
    user_id: int
    kind: EventKind
    stage: Stage | JobPhase | None = None
    position: int = 0  # place in the queue, for queued
    message: str = ""  # in English, as the job's error_message stores it
    cached: bool = False
    artifact: dict[str, Any] | None = None  # for artifact: a file ready to send before the job ends (ready_file)
    reason: FailureReason | None = None  # for failed
    # The figures a text for `reason` names: seconds (timeout), mb (memory), cause (crash: signal or exit code).
    reason_args: Mapping[str, str | int | float] = field(default_factory=dict)


def stored_stage(text: str) -> Stage | JobPhase | None:
    """A job's stage column as an enum; None for a value rows written before stage ids were stored hold
    (English names such as "converting TFLite")."""
    for kind in (Stage, JobPhase):
        if text in kind.__members__.values():
            return kind(text)
    return None

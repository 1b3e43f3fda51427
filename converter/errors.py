"""Errors the converter raises: each carries a short message written for the user and,
where a toolchain failed, the full log for whoever wants it."""

from __future__ import annotations


class ConvbotError(Exception):
    """A failure a user can act on: `message` is one short line, `log` the details."""

    def __init__(self, message: str, log: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.log = log


class UnsupportedModelError(ConvbotError):
    """The file is not a model convbot can read (wrong format, damaged, unsafe)."""


class UnsafeArchiveError(UnsupportedModelError):
    """An archive that tries to escape its folder or unpack to far more than it holds."""


class ConversionError(ConvbotError):
    """TensorFlow's converters failed; `log` holds their full output."""


class ConversionTimeout(ConversionError):
    """The conversion ran longer than its time limit and was stopped."""


class ConverterCrash(ConversionError):
    """The process running the conversion died (crash, abort, out of memory)."""


class BadOptionsError(ConvbotError, ValueError):
    """The options do not fit the model (unknown node, missing shape); the message says how to fix them."""

"""What the real Bot API defines and the fake copies: its limits and the shape of its error answers."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

JSONDict = dict[str, Any]

MB = 1024 * 1024
DOWNLOAD_LIMIT = 20 * MB
"""The largest file a bot may fetch with getFile from the public Bot API."""
UPLOAD_LIMIT = 50 * MB
"""The largest file a bot may upload to the public Bot API."""
LOCAL_UPLOAD_LIMIT = 2000 * MB
"""The largest file a bot may upload to a local Bot API server."""

MAX_TEXT_LENGTH = 4096
MAX_CAPTION_LENGTH = 1024
MAX_CALLBACK_DATA_BYTES = 64
MAX_CALLBACK_ANSWER_LENGTH = 200

CONFLICT_DESCRIPTION = (
    "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running"
)
NOT_MODIFIED_DESCRIPTION = (
    "Bad Request: message is not modified: specified new message content and reply markup are exactly "
    "the same as a current content and reply markup of the message"
)


class ApiError(Exception):
    """An error answer of the Bot API, in the shape Telegram sends it."""

    def __init__(self, error_code: int, description: str, parameters: JSONDict | None = None) -> None:
        super().__init__(description)
        self.error_code = error_code
        self.description = description
        self.parameters = parameters

    def to_json(self) -> JSONDict:
        body: JSONDict = {"ok": False, "error_code": self.error_code, "description": self.description}
        if self.parameters:
            body["parameters"] = self.parameters
        return body

    @classmethod
    def bad_request(cls, message: str) -> ApiError:
        return cls(400, f"Bad Request: {message}")

    @classmethod
    def injected(cls, error_code: int, retry_after: int | None, description: str | None) -> ApiError:
        parameters: JSONDict | None = None
        if error_code == 429:
            seconds = 1 if retry_after is None else retry_after
            parameters = {"retry_after": seconds}
            description = description or f"Too Many Requests: retry after {seconds}"
        elif description is None:
            description = _DEFAULT_DESCRIPTIONS.get(error_code)
            if description is None:
                try:
                    description = HTTPStatus(error_code).phrase
                except ValueError:
                    description = f"Error {error_code}"
        return cls(error_code, description, parameters)


_DEFAULT_DESCRIPTIONS = {
    400: "Bad Request: injected failure",
    401: "Unauthorized",
    403: "Forbidden: bot was blocked by the user",
    404: "Not Found",
    409: CONFLICT_DESCRIPTION,
    500: "Internal Server Error",
    502: "Bad Gateway",
}

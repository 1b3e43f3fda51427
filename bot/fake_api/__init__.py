"""A fake Telegram Bot API server that speaks the real HTTP protocol (see :mod:`bot.fake_api.server`)."""

from bot.fake_api.server import (
    DOWNLOAD_LIMIT,
    LOCAL_UPLOAD_LIMIT,
    UPLOAD_LIMIT,
    ApiError,
    BotAction,
    FailedCall,
    FakeBotApi,
    FakeUser,
    SentDocument,
)

__all__ = [
    "DOWNLOAD_LIMIT",
    "LOCAL_UPLOAD_LIMIT",
    "UPLOAD_LIMIT",
    "ApiError",
    "BotAction",
    "FailedCall",
    "FakeBotApi",
    "FakeUser",
    "SentDocument",
]

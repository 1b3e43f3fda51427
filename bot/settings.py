"""The bot's settings: the job layer's, plus Telegram's. All `CONVBOT_*`, also read from `.env`;
a variable set in the environment wins over `.env`."""

from __future__ import annotations

from pydantic import Field, field_validator

from jobs.settings import Settings

PUBLIC_API_URL = "https://api.telegram.org"


class BotSettings(Settings):
    token: str = ""  # from BotFather; empty starts console mode (a later issue)
    api_url: str = PUBLIC_API_URL  # the bot calls {api_url}/bot{token}/{method}
    local_api: bool = False  # a self-hosted Bot API server: large files, local file paths
    allowed_users: str = ""  # comma-separated Telegram user ids; empty: anyone
    admins: str = ""  # comma-separated user ids allowed /stats and /cleanup
    max_upload_mb: float = Field(default=20.0, gt=0)
    daily_jobs: int = Field(default=50, ge=1)

    @field_validator("allowed_users", "admins")
    @classmethod
    def _user_ids(cls, value: str) -> str:
        for part in value.split(","):
            if part.strip() and not part.strip().lstrip("-").isdigit():
                raise ValueError(f"'{part.strip()}' is not a Telegram user id (a whole number)")
        return value

    @field_validator("api_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @property
    def allowed_user_ids(self) -> frozenset[int]:
        return _ids(self.allowed_users)

    @property
    def admin_ids(self) -> frozenset[int]:
        return _ids(self.admins)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)


def _ids(text: str) -> frozenset[int]:
    return frozenset(int(part) for part in text.split(",") if part.strip())

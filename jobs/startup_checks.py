"""What a convbot process checks before it starts serving: the storage and the broker it is set to use.
A bad setting (a bucket that does not exist, wrong credentials, an unreachable broker) stops the bot or
the worker at once with one line naming the setting, not at its first job."""

from __future__ import annotations

from jobs.settings import Settings, SettingsError
from jobs.storage import StorageError, storage_from_settings


def check_services(settings: Settings) -> None:
    """SettingsError (one line, naming the setting at fault) when the storage or the broker cannot be used."""
    try:
        storage_from_settings(settings).check()
    except StorageError as error:
        raise SettingsError(str(error)) from None
    if settings.broker_url:
        from jobs.celery_app import check_broker  # Celery is imported only where it is used

        check_broker(settings.broker_url).close()

"""Tests of bot.fake_api, driven by the real python-telegram-bot and by raw HTTP."""

"""Files: sent back by file_id, getFile's 20 MB limit, and local mode serving files from disk."""

from __future__ import annotations

from pathlib import Path

import pytest
from telegram.error import BadRequest

from bot.fake_api import DOWNLOAD_LIMIT, FakeBotApi, SentDocument
from tests.bot.fake_api.support import ALICE, async_test, bot_for


@async_test
async def test_file_sent_back_by_file_id_is_the_same_file() -> None:
    async with FakeBotApi() as api:
        api.add_user(ALICE)
        async with bot_for(api) as bot:
            first = await bot.send_document(ALICE.id, b"weights", filename="w.bin")
            assert first.document is not None
            again = await bot.send_document(ALICE.id, first.document.file_id, caption="<i>again</i>", parse_mode="HTML")
            assert again.document is not None and again.document.file_id == first.document.file_id
            assert again.caption == "again"
            assert api.documents_sent(ALICE.id) == [
                SentDocument("w.bin", b"weights", None),
                SentDocument("w.bin", b"weights", "again"),
            ]
            with pytest.raises(BadRequest, match="Wrong file identifier"):
                await bot.send_document(ALICE.id, "no-such-file-id")


@async_test
async def test_file_too_big_for_get_file_but_normal_files_download() -> None:
    async with FakeBotApi() as api:
        big = api.user_sends_document(ALICE, b"head of a big model", "big.h5", file_size=DOWNLOAD_LIMIT + 1)
        small = api.user_sends_document(ALICE, b"x" * 1000, "small.h5")
        async with bot_for(api) as bot:
            with pytest.raises(BadRequest, match=r"^File is too big$"):
                await bot.get_file(big["document"]["file_id"])
            file = await bot.get_file(small["document"]["file_id"])
            assert file.file_size == 1000 and file.file_path is not None
            assert file.file_path.startswith(f"{api.base_file_url}{api.token}/documents/file_")
            assert file.file_path.endswith(".h5")
            assert bytes(await file.download_as_bytearray()) == b"x" * 1000


@async_test
async def test_local_mode_serves_big_files_from_disk(tmp_path: Path) -> None:
    model = tmp_path / "model.tflite"
    model.write_bytes(b"TFL3" * 10)
    async with FakeBotApi(local_mode=True) as api:
        big = api.user_sends_document(ALICE, b"not really 21 MB", "big.h5", file_size=DOWNLOAD_LIMIT + 1)
        async with bot_for(api, local_mode=True) as bot:
            file = await bot.get_file(big["document"]["file_id"])
            assert file.file_path is not None and Path(file.file_path).is_absolute()
            assert bytes(await file.download_as_bytearray()) == b"not really 21 MB"
            # In local mode PTB passes a path as a file:// URI instead of uploading it.
            sent = await bot.send_document(ALICE.id, model)
            assert sent.document is not None and sent.document.file_name == "model.tflite"
        assert api.documents_sent(ALICE.id) == [SentDocument("model.tflite", b"TFL3" * 10, None)]
        local_dir = Path(file.file_path).parent.parent
    assert not local_dir.exists()

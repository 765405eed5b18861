"""File transfers' rules (desktop_proxy/files.py): names, where files may go, no overwrites."""

from __future__ import annotations

import asyncio

import pytest

from desktop_proxy.files import FileTransfers, TransferError, check_name, free_name, size_text
from desktop_proxy.pages import Pages


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "../up", "nul\0byte", "tab\tname", "x" * 256,
                                  ".hepsdesk-upload-0123456789abcdef"])
def test_names_that_are_not_one_plain_file_name_are_refused(name):
    with pytest.raises(TransferError) as refused:
        check_name(name)
    assert refused.value.status == 400


@pytest.mark.parametrize("name", ["scan 0042.h5", "数据.txt", ".bashrc", "résumé (final).pdf", "é" * 127])
def test_ordinary_names_pass(name):
    assert check_name(name) == name


def test_a_taken_name_gets_a_number_and_nothing_is_overwritten(tmp_path):
    assert free_name(tmp_path, "fit.png") == tmp_path / "fit.png"
    for name in ("fit.png", "fit (1).png", ".profile", "README"):
        (tmp_path / name).write_text("kept")
    assert free_name(tmp_path, "fit.png") == tmp_path / "fit (2).png"
    assert free_name(tmp_path, ".profile") == tmp_path / ".profile (1)"
    assert free_name(tmp_path, "README") == tmp_path / "README (1)"
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    assert free_name(tmp_path, "dangling") == tmp_path / "dangling (1)", "a dangling link is a taken name too"


def test_only_the_home_and_data_directories_are_allowed_even_through_links(tmp_path):
    home, data, other = tmp_path / "home", tmp_path / "data", tmp_path / "other"
    for directory in (home, data, other):
        directory.mkdir()
    (home / "out").symlink_to(other)
    (home / "in").symlink_to(data)
    transfers = FileTransfers(home, Pages(), [data])
    assert transfers.allowed(home / "sub") == home / "sub"
    assert transfers.allowed(home / "in" / "x") == data / "x"
    for path in (other, home / "out", home / "out" / "x", home / ".." / "other", tmp_path):
        with pytest.raises(TransferError, match="outside your home and data directories"):
            transfers.allowed(path)


def test_a_chunk_out_of_order_or_too_long_is_refused_and_a_cancel_leaves_nothing(tmp_path):
    async def run():
        transfers = FileTransfers(tmp_path, Pages())
        upload = await transfers.create_upload("a.bin", 6)
        with pytest.raises(TransferError, match="starts at 0, not 3"):
            await transfers.write_chunk(upload.id, 3, b"abc")
        await transfers.write_chunk(upload.id, 0, b"abc")
        with pytest.raises(TransferError, match="longer than the 6 bytes announced"):
            await transfers.write_chunk(upload.id, 3, b"defg")
        assert [p.name for p in tmp_path.iterdir()] == [upload.part.name]
        await transfers.cancel(upload.id)
        assert list(tmp_path.iterdir()) == []
        empty = await transfers.create_upload("empty.txt", 0)
        assert empty.path == tmp_path / "empty.txt" and empty.path.read_bytes() == b""
    asyncio.run(run())


def test_sizes_read_as_people_write_them():
    assert [size_text(n) for n in (5, 2048, 50 << 20, 3 << 30)] == ["5 bytes", "2.0 KB", "50.0 MB", "3.0 GB"]

"""knowmix.fileio.atomic_write: the one atomic write (local paths here; remote ones in test_remote_paths)."""

import os

import pyarrow as pa
import pytest

from knowmix import fileio


def test_a_failed_write_leaves_the_previous_file_and_no_temporary(tmp_path):
    path = tmp_path / "sub" / "a.json"
    fileio.write_text(str(path), "old\n")

    def fail(fh):
        fh.write(b"half of the new")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        fileio.atomic_write(str(path), fail)
    assert path.read_text() == "old\n"
    assert sorted(os.listdir(path.parent)) == ["a.json"]


def test_the_opener_opens_the_temporary_file_and_write_returns(tmp_path):
    path = str(tmp_path / "t.arrow")
    opened = []

    def opener(tmp):
        opened.append(tmp)
        return pa.OSFile(tmp, "wb")

    table = pa.table({"x": [1, 2, 3]})

    def write(sink):
        with pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
        return table.num_rows

    assert fileio.atomic_write(path, write, opener=opener) == 3
    assert len(opened) == 1 and os.path.dirname(opened[0]) == str(tmp_path) and opened[0] != path
    assert not os.path.exists(opened[0])
    with pa.memory_map(path) as source:
        assert pa.ipc.open_file(source).read_all().equals(table)


def test_copy_file_and_write_bytes(tmp_path):
    src, dest = tmp_path / "src.bin", tmp_path / "out" / "dest.bin"
    data = bytes(range(256)) * 5000
    fileio.write_bytes(str(src), data)
    fileio.copy_file(str(src), str(dest))
    assert dest.read_bytes() == data == src.read_bytes()

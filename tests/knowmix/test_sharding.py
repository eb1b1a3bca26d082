"""knowmix.sharding.auto_num_shards: the expected counts are worked out by hand from 64 MiB per shard."""

import pytest

from knowmix.sharding import SHARD_TARGET_BYTES, auto_num_shards, text_bytes

MIB = 1 << 20


def test_the_target_is_64_mib():
    assert SHARD_TARGET_BYTES == 64 * MIB


@pytest.mark.parametrize("input_bytes, minimum, whole, expected", [
    (0, 1, False, 1), (1, 1, False, 1), (64 * MIB, 1, False, 1), (64 * MIB + 1, 1, False, 2),
    (640 * MIB, 1, False, 10), (1, 4, False, 4), (9 * 64 * MIB + 1, 4, False, 10),   # clean: at least 4
    (0, 1, True, 1), (127 * MIB, 1, True, 1), (128 * MIB, 1, True, 2), (200 * MIB, 1, True, 3),  # kg-samples: floor
])
def test_auto_num_shards(input_bytes, minimum, whole, expected):
    assert auto_num_shards(input_bytes, minimum=minimum, whole_shards_only=whole) == expected


def test_compressed_files_count_four_times():
    assert text_bytes("a/x.jsonl", 10) == 10
    assert [text_bytes(f"x.jsonl{s}", 10) for s in (".gz", ".bz2", ".zst")] == [40, 40, 40]


def test_a_negative_size_is_a_bug():
    with pytest.raises(ValueError):
        auto_num_shards(-1)

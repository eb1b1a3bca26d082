"""How many output shards a job writes when the user does not say: about ``SHARD_TARGET_BYTES`` of input each.

Beam-free: the jobs (clean, kg-samples, tokenize) measure their input and ask here. A shard is sorted and
written by one worker in memory, so its size, not the corpus's, bounds a worker's memory; and a rerun on the
same input gets the same count, so the same shard bytes.
"""

from __future__ import annotations

SHARD_TARGET_BYTES = 64 << 20
#: a rough expansion factor for compressed inputs (``.gz``, ``.bz2``, ``.zst``): their text is about this
#: many times their size on disk
COMPRESSED_RATIO = 4
COMPRESSED_SUFFIXES = (".gz", ".bz2", ".zst")


def auto_num_shards(input_bytes: int, minimum: int = 1, whole_shards_only: bool = False,
                    target_bytes: int = SHARD_TARGET_BYTES) -> int:
    """About ``target_bytes`` of input per shard, at least ``minimum``.

    The remainder below ``target_bytes`` gets a shard of its own, unless ``whole_shards_only`` (kg-samples'
    rule since its first version: its docs input is counted compressed, and its samples are smaller than the
    docs they come from)."""
    if input_bytes < 0:
        raise ValueError(f"input_bytes must be >= 0, got {input_bytes}")
    shards = input_bytes // target_bytes if whole_shards_only else -(-input_bytes // target_bytes)
    return max(minimum, shards)


def text_bytes(path: str, size: int) -> int:
    """The bytes of text a file of ``size`` bytes holds, about: compressed files count ``COMPRESSED_RATIO`` times."""
    return size * COMPRESSED_RATIO if path.endswith(COMPRESSED_SUFFIXES) else size

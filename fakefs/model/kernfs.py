"""The order in which kernfs (cgroupfs) lists a directory.

kernfs keeps a directory's children in a tree sorted by the hash of their
names (then the name) and readdir walks that tree, so ``ls -f`` of a cgroup
shows neither creation nor alphabetical order. Clients depend on it:
libcgroup's ``cgroup_get_cgroup`` (``cgget -g``) keeps the result of the
*last* regular file it read, and fails with ECGINVAL when that file's name
has no dot (``tasks``), which happens in alphabetical order but not in the
kernel's. fs/kernfs/dir.c: kernfs_name_hash, kernfs_sd_compare.
"""

from __future__ import annotations

import functools
from typing import Iterable

from fakefs.model.kparse import INT_MAX, U64_MAX

_GOLDEN_RATIO_64 = 0x61C8864680B583EB  # include/linux/hash.h


def kernfs_name_hash(name: str) -> int:
    """kernfs_name_hash(name, ns=NULL) of a 64-bit kernel: partial_name_hash
    over the bytes, end_name_hash (hash_long to 32 bits), then 31 bits with
    0, 1 and INT_MAX kept for the magic entries."""
    h = 0  # init_name_hash(NULL)
    for c in name.encode("utf-8", "surrogateescape"):
        h = ((h + (c << 4) + (c >> 4)) * 11) & U64_MAX
    h = ((h * _GOLDEN_RATIO_64) & U64_MAX) >> 32
    h &= INT_MAX
    if h < 2:
        h += 2
    if h >= INT_MAX:
        h = INT_MAX - 1
    return h


# Listing a directory sorts every name in it, for every readdir request:
# names repeat (control files, the same children), so keep their keys.
@functools.lru_cache(maxsize=1 << 16)
def _position(name: str) -> tuple[int, str]:
    return kernfs_name_hash(name), name  # kernfs_sd_compare: hash, then name


def kernfs_order(names: Iterable[str]) -> list[str]:
    """``names`` in the order readdir gives them on cgroupfs."""
    return sorted(names, key=_position)

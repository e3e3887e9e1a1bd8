"""UUID-shaped ids: random ones from a seeded generator, and stable ones computed from (seed, kind, index).

Stable ids let separate passes of the generator agree on who is who without keeping a list in memory: the
session pass names user number 4711 exactly as the user pass did.
"""

from __future__ import annotations

import hashlib
import random

_MASK = (1 << 64) - 1
_VERSION_4 = 0x4 << 76
_CLEAR_VERSION_AND_VARIANT = ~((0xF << 76) | (0x3 << 62)) & ((1 << 128) - 1)
_VARIANT_RFC4122 = 0x2 << 62


def _mix64(x: int) -> int:
    """splitmix64's finaliser: a cheap, well-spread 64-bit hash of an integer."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def format_uuid(bits: int) -> str:
    """A 128-bit integer as a version-4 UUID string."""
    bits = (bits & _CLEAR_VERSION_AND_VARIANT) | _VERSION_4 | _VARIANT_RFC4122
    h = f"{bits:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def random_uuid(rng: random.Random) -> str:
    return format_uuid(rng.getrandbits(128))


def key_for(seed: int, kind: str) -> int:
    """A 64-bit key for one kind of entity under one seed."""
    return int.from_bytes(hashlib.blake2b(f"{seed}:{kind}".encode(), digest_size=8).digest(), "big")


def stable_uuid(key: int, index: int) -> str:
    """The id of entity ``index`` of the kind ``key`` stands for."""
    x = (key + index) & _MASK
    return format_uuid((_mix64(x) << 64) | _mix64(x ^ 0xD1B54A32D192ED03))


def stable_int(key: int, index: int, modulo: int) -> int:
    """A well-spread number in [0, modulo) for entity ``index`` of the kind ``key`` stands for."""
    return _mix64((key + index) & _MASK) % modulo


def stable_fraction(key: int, index: int) -> float:
    """A well-spread number in [0, 1) for entity ``index`` of the kind ``key`` stands for."""
    return (_mix64((key + index) & _MASK) >> 11) / float(1 << 53)

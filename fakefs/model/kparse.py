"""Parsers that behave like the kernel's own (lib/kstrtox.c, lib/cmdline.c,
lib/bitmap.c), measured against Linux 6.18 on the development VM.
"""

from __future__ import annotations

import errno

from .errors import KernelError, einval

U64_MAX = (1 << 64) - 1
S64_MAX = (1 << 63) - 1
S64_MIN = -(1 << 63)


def _strip_one_newline(text: str) -> str:
    # kstrto*() accept exactly one trailing newline and nothing else.
    return text[:-1] if text.endswith("\n") else text


def _parse_digits(text: str, base: int) -> int:
    """Kernel _parse_integer with base auto-detection (base 0)."""
    if base == 0:
        if text[:2].lower() == "0x" and len(text) > 2 and text[2] in "0123456789abcdefABCDEF":
            base, text = 16, text[2:]
        elif text.startswith("0") and len(text) > 1:
            base, text = 8, text[1:]
        else:
            base = 10
    elif base == 16 and text[:2].lower() == "0x":
        text = text[2:]
    if not text:
        raise einval("no digits")
    value = 0
    for ch in text:
        digit = int(ch, 36) if ch.isalnum() and ch.isascii() else 99
        if digit >= base:
            raise einval(f"bad digit {ch!r}")
        value = value * base + digit
        if value > U64_MAX:
            raise KernelError(errno.ERANGE, "overflow")
    return value


def kstrtoull(text: str, base: int = 0) -> int:
    """Unsigned 64-bit: optional '+', base prefix, one trailing newline."""
    text = _strip_one_newline(text)
    if text.startswith("+"):
        text = text[1:]
    return _parse_digits(text, base)


def kstrtoll(text: str, base: int = 0) -> int:
    """Signed 64-bit: as kstrtoull with an optional '-'."""
    body = _strip_one_newline(text)
    if body.startswith("-"):
        value = _parse_digits(body[1:], base)
        if value > -S64_MIN:
            raise KernelError(errno.ERANGE, "overflow")
        return -value
    value = kstrtoull(text, base)
    if value > S64_MAX:
        raise KernelError(errno.ERANGE, "overflow")
    return value


def kstrtoint_range(text: str, lo: int, hi: int, base: int = 0) -> int:
    value = kstrtoll(text, base)
    if not lo <= value <= hi:
        raise KernelError(errno.ERANGE, "out of range")
    return value


_MEMPARSE_SHIFT = {"k": 10, "m": 20, "g": 30, "t": 40, "p": 50, "e": 60}


def memparse(text: str) -> tuple[int, str]:
    """lib/cmdline.c memparse(): simple_strtoull base 0 then a K/M/G/T/P/E
    suffix. Returns (value, rest) like the kernel's end pointer."""
    i = 0
    base = 10
    if text[:2].lower() == "0x" and len(text) > 2 and text[2] in "0123456789abcdefABCDEF":
        base, i = 16, 2
    elif text.startswith("0"):
        base = 8
    start = i
    value = 0
    while i < len(text):
        ch = text[i]
        if not (ch.isascii() and ch.isalnum()):
            break
        digit = int(ch, 36)
        if digit >= base:
            break
        value = (value * base + digit) & U64_MAX
        i += 1
    if i == start and base != 8:
        return 0, text  # nothing parsed: end pointer == start
    rest = text[i:]
    if rest and rest[0].lower() in _MEMPARSE_SHIFT:
        value = (value << _MEMPARSE_SHIFT[rest[0].lower()]) & U64_MAX
        rest = rest[1:]
    return value, rest


def kernel_strstrip(text: str) -> str:
    """lib/string.c strstrip(): drop leading and trailing whitespace."""
    return text.strip(" \t\n\v\f\r")


def parse_cpulist(text: str, nbits: int) -> set[int]:
    """bitmap_parselist(): '0-3,5,8-15:2/4'; empty means the empty set.

    A bit at or past ``nbits`` gives ERANGE, bad syntax EINVAL, as measured.
    """
    text = _strip_one_newline(text)
    result: set[int] = set()
    if text == "":
        return result
    for chunk in text.split(","):
        if chunk == "":
            raise einval("empty region")
        stride = None
        if ":" in chunk:
            chunk, _, stride_part = chunk.partition(":")
            used, _, group = stride_part.partition("/")
            if not used.isdigit() or not group.isdigit() or int(group) == 0 or int(used) > int(group):
                raise einval("bad stride")
            stride = (int(used), int(group))
        lo_s, dash, hi_s = chunk.partition("-")
        if not lo_s.isdigit() or (dash and not hi_s.isdigit()):
            if dash and hi_s == "N":
                hi_s = str(nbits - 1)
            else:
                raise einval("bad region")
        lo = int(lo_s)
        hi = int(hi_s) if dash else lo
        if lo > hi:
            raise einval("reversed region")
        if hi >= nbits:
            raise KernelError(errno.ERANGE, "cpu out of range")
        for bit in range(lo, hi + 1):
            if stride is None or (bit - lo) % stride[1] < stride[0]:
                result.add(bit)
    return result


def format_cpulist(bits: set[int] | frozenset[int]) -> str:
    """bitmap_print_to_pagebuf(list=true): '0-3,5'."""
    out: list[str] = []
    ordered = sorted(bits)
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        out.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(out)

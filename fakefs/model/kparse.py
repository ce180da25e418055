"""Parsers that behave like the kernel's own (lib/kstrtox.c, lib/cmdline.c,
lib/bitmap.c), measured against Linux 6.18 on the development VM.
"""

from __future__ import annotations

import errno

from fakefs.model.errors import KernelError, einval

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


def simple_strtoull(s: str, i: int = 0, base: int = 0) -> tuple[int, int]:
    """lib/vsprintf.c simple_strtoull(): radix fix-up for base 0/16, digits
    until the first non-digit, wrapping at 2^64. Returns (value, end index);
    the end equals the start when nothing was parsed."""
    if base in (0, 16) and s[i:i + 2].lower() == "0x" and i + 2 < len(s) and s[i + 2] in "0123456789abcdefABCDEF":
        base, i = 16, i + 2
    elif base == 0:
        base = 8 if s[i:i + 1] == "0" else 10
    value = 0
    while i < len(s):
        ch = s[i]
        if not (ch.isascii() and ch.isalnum()):
            break
        digit = int(ch, 36)
        if digit >= base:
            break
        value = (value * base + digit) & U64_MAX
        i += 1
    return value, i


def memparse(text: str) -> tuple[int, str]:
    """lib/cmdline.c memparse(): simple_strtoull base 0 then a K/M/G/T/P/E
    suffix. Returns (value, rest) like the kernel's end pointer."""
    value, end = simple_strtoull(text, 0, 0)
    if end == 0 and not text.startswith("0"):
        return 0, text  # nothing parsed: end pointer == start
    rest = text[end:]
    if rest and rest[0].lower() in _MEMPARSE_SHIFT:
        value = (value << _MEMPARSE_SHIFT[rest[0].lower()]) & U64_MAX
        rest = rest[1:]
    return value, rest


def kernel_strstrip(text: str) -> str:
    """lib/string.c strstrip(): drop leading and trailing isspace() chars."""
    return text.strip(_KSPACE)


def parse_cpulist(text: str, nbits: int) -> set[int]:
    """bitmap_parselist() on a C string: '0-3,5,8-15:2/4'; empty is empty."""
    return bitmap_parselist(text, nbits)


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


# -- C strings and bitmap_parselist (lib/string.c, lib/bitmap-str.c) ---------

_U32 = 0xFFFFFFFF
# lib/ctype.c isspace(): the C locale's blanks plus Latin-1 NBSP (0xa0),
# which the kernel's ctype table also marks as space (measured: "1\xa0" ok).
_KSPACE = " \t\n\v\f\r\xa0"


def c_string(text: str) -> str:
    """kernfs hands the handler a NUL-terminated buffer: C string functions
    stop at the first NUL (measured: "0\\0junk" is accepted as "0")."""
    return text.split("\0", 1)[0]


# -- bitmap_parselist (lib/bitmap-str.c) -----------------------------------

def _end_of_str(c: str) -> bool:
    return c in ("", "\0", "\n")


def _sep(c: str) -> bool:  # __end_of_region
    return c != "" and (c in _KSPACE or c == ",")


def _end_of_region(c: str) -> bool:
    return _sep(c) or _end_of_str(c)


def _getnum(s: str, i: int, lastbit: int) -> tuple[int, int]:
    """bitmap_getnum(): 'N' is the last bit, else decimal digits."""
    if s[i:i + 1] == "N":
        return lastbit, i + 1
    j = i
    while j < len(s) and "0" <= s[j] <= "9":
        j += 1
    if j == i:
        raise einval("expected a number")
    if j - i > 20:  # more digits than any u64: overflow, and int() refuses huge strings
        raise KernelError(errno.EOVERFLOW, "number over u32")
    n = int(s[i:j])
    if n > _U32:
        raise KernelError(errno.EOVERFLOW, "number over u32")
    return n, j


def bitmap_parselist(text: str, nbits: int) -> set[int]:
    """The kernel's list parser: regions ``a``, ``a-b``, ``a-b:used/group``,
    ``all``; commas and blanks separate; NUL or newline ends the list."""
    s = c_string(text)
    lastbit = nbits - 1
    bits: set[int] = set()
    i = 0
    at = lambda k: s[k:k + 1]  # noqa: E731 - '' past the end, like '\0'
    while True:
        while _sep(at(i)):  # bitmap_find_region
            i += 1
        if _end_of_str(at(i)):
            return bits
        # bitmap_parse_region
        if s[i:i + 3].lower() == "all":
            start, end, i = 0, lastbit, i + 3
            ranged = True
        else:
            start, i = _getnum(s, i, lastbit)
            if _end_of_region(at(i)):
                end, ranged = start, False
            elif at(i) != "-":
                raise einval("bad region")
            else:
                end, i = _getnum(s, i + 1, lastbit)
                ranged = True
        stride = ranged and not _end_of_region(at(i))
        if stride:
            if at(i) != ":":
                raise einval("bad region")
            off, i = _getnum(s, i + 1, lastbit)
            if at(i) != "/":
                raise einval("bad stride")
            group, i = _getnum(s, i + 1, lastbit)
        else:
            # no pattern: u32 arithmetic, so 4294967295 wraps to group 0
            off = group = (end + 1) & _U32
        # bitmap_check_region
        if start > end or group == 0 or off > group:
            raise einval("bad region")
        if end >= nbits:
            raise KernelError(errno.ERANGE, "bit past the mask")
        pos = start
        while pos <= end:  # bitmap_set_region
            bits.update(range(pos, pos + min(end - pos + 1, off)))
            pos += group
        # Without a stride the region parser itself stops at NUL/newline;
        # after one, the loop's separator skip would step over a newline.
        if not stride and _end_of_str(at(i)):
            return bits



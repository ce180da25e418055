"""The kernel's parsers (lib/kstrtox.c, lib/vsprintf.c, lib/cmdline.c,
lib/string.c, lib/bitmap-str.c) and the C limits they work with, measured
against Linux 6.18 (x86_64) on the development VM. Every controller and the
/proc/sys handlers parse with these; none keeps a digit loop of its own.

Write handlers get text already cut at its first NUL: kernfs hands them a
NUL-terminated copy, and ``Hierarchy.write_file`` cuts once with
:func:`c_string` for all of them.
"""

from __future__ import annotations

import errno

from fakefs.model.errors import KernelError, einval

# -- C limits of the measured kernel: int is 32 bits, long 64 ---------------

INT_MAX = (1 << 31) - 1  # S32_MAX
INT_MIN = -(1 << 31)
U32_MAX = (1 << 32) - 1  # UINT_MAX
S64_MAX = (1 << 63) - 1  # LONG_MAX
S64_MIN = -(1 << 63)
U64_MAX = (1 << 64) - 1  # ULONG_MAX
PAGE_SIZE = 4096
# kernfs has no per-name limit; only a path must fit in PATH_MAX (measured:
# 1000-character cgroup names work, 4060 gives ENAMETOOLONG).
PATH_MAX = 4096

# lib/ctype.c isspace(): the C locale's blanks plus Latin-1 NBSP (0xa0),
# which the kernel's ctype table also marks as space (measured: "1\xa0" ok).
KSPACE = " \t\n\v\f\r\xa0"
XDIGITS = "0123456789abcdefABCDEF"


def c_string(text: str) -> str:
    """The text a C string function sees: up to the first NUL (measured:
    "0\\0junk" is accepted as "0")."""
    return text.split("\0", 1)[0]


def to_s64(value: int) -> int:
    """A u64 as the kernel's signed long sees it."""
    return (value + (1 << 63)) % (1 << 64) - (1 << 63)


# -- integers (lib/kstrtox.c, lib/vsprintf.c) ---------------------------------

def fixup_radix(s: str, i: int, base: int) -> tuple[int, int]:
    """_parse_integer_fixup_radix(): base 0 means 16 after "0x" followed by a
    hex digit, 8 after "0", else 10; base 16 skips a "0x". Returns (base,
    index of the first digit)."""
    if base == 0:
        if s[i:i + 1] == "0":
            base = 16 if s[i + 1:i + 2].lower() == "x" and s[i + 2:i + 3] != "" and s[i + 2:i + 3] in XDIGITS else 8
        else:
            base = 10
    if base == 16 and s[i:i + 2].lower() == "0x":
        i += 2
    return base, i


def parse_integer(s: str, i: int, base: int) -> tuple[int, int, bool]:
    """_parse_integer(): the digits of ``base`` from index ``i`` on. Returns
    (value modulo 2^64, index after the last digit, whether it overflowed a
    u64); no digit leaves the index at ``i``."""
    value = 0
    overflow = False
    while i < len(s):
        ch = s[i]
        if "0" <= ch <= "9":
            digit = ord(ch) - 48
        elif ch.isascii() and "a" <= ch.lower() <= "f":
            digit = ord(ch.lower()) - 87
        else:
            break
        if digit >= base:
            break
        value = value * base + digit
        if value > U64_MAX:
            overflow = True
            value &= U64_MAX
        i += 1
    return value, i, overflow


def _kstrtoull_unsigned(text: str, base: int) -> int:
    """_kstrtoull(): the whole text is one number (no sign), then at most
    one newline."""
    base, start = fixup_radix(text, 0, base)
    value, end, overflow = parse_integer(text, start, base)
    if overflow:
        raise KernelError(errno.ERANGE, "overflow")
    if end == start:
        raise einval("no digits")
    if text[end:] not in ("", "\n"):
        raise einval(f"bad digit {text[end]!r}")
    return value


def kstrtoull(text: str, base: int = 0) -> int:
    """Unsigned 64-bit: optional '+', base prefix, one trailing newline."""
    return _kstrtoull_unsigned(text[1:] if text.startswith("+") else text, base)


def kstrtoll(text: str, base: int = 0) -> int:
    """Signed 64-bit: as kstrtoull with an optional '-'."""
    if text.startswith("-"):
        value = _kstrtoull_unsigned(text[1:], base)
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
    base, digits = fixup_radix(s, i, base)
    value, end, _overflow = parse_integer(s, digits, base)
    return value, end


def skip_spaces(s: str, i: int) -> int:
    """lib/string.c skip_spaces() from index ``i``."""
    while i < len(s) and s[i] in KSPACE:
        i += 1
    return i


def scan_unsigned(s: str, i: int, bits: int = 64) -> tuple[int, int] | None:
    """One vsscanf ``%u``/``%llu`` conversion from index ``i``: skip blanks,
    require a decimal digit, parse (wrapping), truncate to ``bits``. None when
    the conversion fails (sscanf stops counting there)."""
    i = skip_spaces(s, i)
    if i >= len(s) or not ("0" <= s[i] <= "9"):
        return None
    value, end = simple_strtoull(s, i, 10)
    return value & ((1 << bits) - 1), end


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
    return text.strip(KSPACE)


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


# -- bitmap_parselist (lib/bitmap-str.c) -----------------------------------

def _end_of_str(c: str) -> bool:
    return c in ("", "\0", "\n")


def _sep(c: str) -> bool:  # __end_of_region
    return c != "" and (c in KSPACE or c == ",")


def _end_of_region(c: str) -> bool:
    return _sep(c) or _end_of_str(c)


def _getnum(s: str, i: int, lastbit: int) -> tuple[int, int]:
    """bitmap_getnum(): 'N' is the last bit, else decimal digits."""
    if s[i:i + 1] == "N":
        return lastbit, i + 1
    n, j, overflow = parse_integer(s, i, 10)
    if j == i:
        raise einval("expected a number")
    if overflow or n > U32_MAX:
        raise KernelError(errno.EOVERFLOW, "number over u32")
    return n, j


def bitmap_parselist(s: str, nbits: int) -> set[int]:
    """The kernel's list parser: regions ``a``, ``a-b``, ``a-b:used/group``,
    ``all``; commas and blanks separate; NUL or newline ends the list."""
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
            off = group = (end + 1) & U32_MAX
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



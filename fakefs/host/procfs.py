"""The layout of the kernel's process and machine files under /proc
(/proc/PID/stat, /proc/PID/status, /proc/meminfo): the one place fakefs
parses them. Callers reach /proc their own way (a plain path,
or a private procfs handle that no view covers: ``hostfiles.PrivateDir``)
and pass the text in.

Standard library and the pure model only: the probe imports it, and runs
where trio, psutil or pyfuse3 cannot be imported.
"""

from __future__ import annotations

from typing import Iterable

from fakefs.model.procviews import line_rest

# Indices into stat_fields(): proc(5)'s field numbers minus 3.
STAT_STATE = 0  # (3) R, S, D, Z, ...
STAT_PPID = 1  # (4)
STAT_MINFLT = 7  # (10)
STAT_MAJFLT = 9  # (12)
STAT_UTIME = 11  # (14) clock ticks
STAT_STIME = 12  # (15) clock ticks
STAT_STARTTIME = 19  # (22) clock ticks after boot
STAT_PROCESSOR = 36  # (39) the CPU it last ran on


def read_text(path: str) -> str | None:
    """A whole file; None when it cannot be read (the task is gone)."""
    try:
        with open(path) as f:
            return f.read()
    except (OSError, ValueError):
        return None


def stat_fields(text: str) -> list[str]:
    """The fields of a /proc/PID/stat text after the command name (which may
    hold spaces and parentheses): index 0 is the state. ValueError when the
    text has no command name."""
    return text[text.rindex(")") + 2:].split()


def stat_state(text: str) -> str:
    """The state letter of a /proc/PID/stat text, without splitting the rest
    (a load average counts it for every task of a cgroup)."""
    return text[text.rindex(")") + 2:][:1]


def status_value(text: str, key: str) -> str | None:
    """What follows ``key:`` on its line of a /proc/PID/status text,
    stripped; None when there is no such line."""
    rest = line_rest(text, key + ":")
    return rest.strip() if rest is not None else None


def status_fields(text: str) -> dict[str, str]:
    """Every ``key: value`` line of a /proc/PID/status text."""
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        out[key] = value.strip()
    return out


def byte_values(text: str, keys: Iterable[str]) -> dict[str, int]:
    """The ``Key: N kB`` lines named by ``keys`` of a /proc/PID/status or
    /proc/meminfo text, in bytes (a line without the unit as it is)."""
    wanted = set(keys)
    out = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        if name in wanted:
            parts = rest.split()
            out[name] = int(parts[0]) * (1024 if parts[1:] == ["kB"] else 1)
    return out

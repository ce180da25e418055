"""Profiles: TOML files saying what a consumer needs.

Where they are found, first match wins: the directories of ``--profiles DIR``
and then of ``$FAKEFS_PROFILES`` (``:``-separated), the user's own; then the
profiles shipped inside the package (``fakefs/profiles/``, read through
``importlib.resources``, so an installed wheel has them too). A user profile
with a shipped profile's name replaces it, also where another profile
includes it.

Schema (every key optional)::

    description = "..."
    include = ["other-profile"]          # merged first, in order
    [cgroup]
    target = "/sys/fs/cgroup"
    hierarchies = ["cpu,cpuacct", "memory", "name=systemd"]
    authentic = "prefer"                 # prefer: mount real cgroupfs where possible; never: all fake
    subtree = "fakefs"                   # instead of hierarchies: fake <hierarchy>/fakefs below every
                                         # authentic hierarchy under target (container runtimes)
    runtimes = true                      # container runtimes use the fake hierarchies: their stage processes,
                                         # made with CLONE_PARENT, join the fake cgroups (host/forkwatch.py);
                                         # always so for subtrees
    [procsys]
    entries = ["kernel/cap_last_cap", "vm/panic_on_oom"]   # must exist afterwards
    writable = ["vm/overcommit_memory"]  # must accept writes (synthetic if the real one is read-only)
    [limits]                             # fakefs run: limits at the command's own cgroup paths
    memory = "512M"                      # memory.limit_in_bytes
    cpus = 1.5                           # cpu.cfs_quota_us / cpu.cfs_period_us
    [procviews]                          # lxcfs-style views bound over /proc files (vfs/procviews.py)
    views = ["meminfo", "cpuinfo", "stat", "uptime", "loadavg", "swaps", "diskstats", "cpu-online"]
    limits = "reader"                    # reader: the reading process's cgroups; sandbox: the cgroups
                                         # fakefs itself runs in (a node advertising its own limits)
    [files."/dev/kmsg"]
    kind = "devnull"                     # devnull: bind /dev/null; text: synthetic file
    content = "65536\\n"                 # for kind = "text"
    mode = 0o644
    optional = true                      # skip with a reason when it cannot be placed
"""

from __future__ import annotations

import os
import pathlib
import tomllib
from dataclasses import dataclass, field
from importlib import resources

from fakefs.errors import Reason
from fakefs.manager.limits import KNOWN
from fakefs.model.errors import KernelError
from fakefs.model.procviews import VIEW_MODES, VIEW_PATHS
from fakefs.model.tree import parse_hierarchy_spec


class ProfileError(Reason):
    """A one-line description of what is wrong with a profile."""


PROFILES_ENV = "FAKEFS_PROFILES"


def user_dirs() -> list[str]:
    """The user's profile directories, searched before the shipped ones
    (``--profiles DIR`` puts DIR in front of this variable)."""
    return [d for d in os.environ.get(PROFILES_ENV, "").split(os.pathsep) if d]


def add_user_dir(path: str) -> None:
    """``--profiles DIR``: searched first, also by the processes fakefs starts."""
    os.environ[PROFILES_ENV] = os.pathsep.join([os.path.abspath(path)] + user_dirs())


def shipped_dir():
    """The profiles installed with the package (a Traversable)."""
    return resources.files("fakefs") / "profiles"


def _search_path() -> list:
    dirs = []
    for d in user_dirs():
        if not os.path.isdir(d):
            raise ProfileError(f"profile directory {d} ({PROFILES_ENV} or --profiles) is not a directory")
        dirs.append(pathlib.Path(d))
    return dirs + [shipped_dir()]


@dataclass
class FileSpec:
    path: str
    kind: str = "text"
    content: str = ""
    mode: int = 0o444
    optional: bool = False


@dataclass
class Profile:
    name: str
    description: str = ""
    cgroup_target: str = "/sys/fs/cgroup"
    hierarchies: list[str] = field(default_factory=list)
    authentic: str = "prefer"
    subtree: str = ""
    runtimes: bool = False
    procsys_entries: list[str] = field(default_factory=list)
    procsys_writable: list[str] = field(default_factory=list)
    files: dict[str, FileSpec] = field(default_factory=dict)
    limits: dict[str, str] = field(default_factory=dict)  # KEY -> value as written (manager/limits.py)
    procviews: list[str] = field(default_factory=list)  # view names (model/procviews.py VIEW_PATHS)
    procviews_limits: str = "reader"


_TOP_KEYS = {"description", "include", "cgroup", "procsys", "files", "limits", "procviews"}


def _entries(directory) -> list:
    try:
        return [e for e in directory.iterdir() if e.name.endswith(".toml") and e.is_file()]
    except OSError:
        return []


def available() -> list[str]:
    return sorted({e.name[:-5] for d in _search_path() for e in _entries(d)})


def find(name: str):
    """The file of profile ``name`` (a path to a .toml file is taken as is)."""
    if name.endswith(".toml") and os.sep in name:
        return pathlib.Path(name) if os.path.isfile(name) else None
    if not name or os.sep in name or name.startswith("."):
        return None
    for d in _search_path():
        candidate = d / f"{name}.toml"
        if candidate.is_file():
            return candidate
    return None


def load(name: str, _seen: tuple[str, ...] = ()) -> Profile:
    if name in _seen:
        raise ProfileError(f"profile {name}: include cycle {' -> '.join(_seen + (name,))}")
    path = find(name)
    if path is None:
        raise ProfileError(f"no profile {name!r} (available: {', '.join(available()) or 'none'})")
    try:
        data = tomllib.loads(path.read_bytes().decode())
    except OSError as exc:
        raise ProfileError(f"profile {name}: cannot read {path}: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        # tomllib decodes the bytes itself: non-UTF-8 input is not a TOMLDecodeError
        raise ProfileError(f"profile {name}: {exc}") from None
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise ProfileError(f"profile {name}: unknown key {sorted(unknown)[0]!r}")
    prof = Profile(name=os.path.basename(name).removesuffix(".toml"))
    for inc in _list(data, "include", name):
        _merge(prof, load(inc, _seen + (name,)))
    prof.description = _str(data.get("description", prof.description), "description", name)
    _read_cgroup(prof, data.get("cgroup", {}), name)
    _read_procsys(prof, data.get("procsys", {}), name)
    _read_files(prof, data.get("files", {}), name)
    _read_limits(prof, data.get("limits", {}), name)
    _read_procviews(prof, data.get("procviews", {}), name)
    if prof.subtree and prof.hierarchies:
        # A subtree goes below hierarchies found mounted at planning time;
        # hierarchies this profile would mount itself are not there yet.
        raise ProfileError(f"profile {name}: cgroup.subtree cannot be combined with cgroup.hierarchies")
    return prof


def _merge(into: Profile, other: Profile) -> None:
    if other.hierarchies or other.subtree:
        into.cgroup_target = other.cgroup_target
        into.authentic = other.authentic
    if other.subtree:
        into.subtree = other.subtree
    into.runtimes = into.runtimes or other.runtimes
    for h in other.hierarchies:
        if h not in into.hierarchies:
            into.hierarchies.append(h)
    for e in other.procsys_entries:
        if e not in into.procsys_entries:
            into.procsys_entries.append(e)
    for e in other.procsys_writable:
        if e not in into.procsys_writable:
            into.procsys_writable.append(e)
    into.files.update(other.files)
    into.limits.update(other.limits)
    if other.procviews:
        into.procviews += [v for v in other.procviews if v not in into.procviews]
        into.procviews_limits = other.procviews_limits


def _str(value, key: str, name: str) -> str:
    if not isinstance(value, str):
        raise ProfileError(f"profile {name}: {key} must be a string")
    return value


def _list(table: dict, key: str, name: str) -> list[str]:
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ProfileError(f"profile {name}: {key} must be a list of strings")
    return value


def _check_keys(table, allowed: set[str], where: str, name: str) -> None:
    if not isinstance(table, dict):
        raise ProfileError(f"profile {name}: [{where}] must be a table")
    unknown = set(table) - allowed
    if unknown:
        raise ProfileError(f"profile {name}: unknown key {sorted(unknown)[0]!r} in [{where}]")


def _read_cgroup(prof: Profile, table, name: str) -> None:
    _check_keys(table, {"target", "hierarchies", "authentic", "subtree", "runtimes"}, "cgroup", name)
    if not table:
        return
    prof.cgroup_target = _abs(_str(table.get("target", prof.cgroup_target), "cgroup.target", name), name)
    for spec in _list(table, "hierarchies", name):
        try:
            parse_hierarchy_spec(spec)
        except KernelError as exc:
            raise ProfileError(f"profile {name}: {exc.detail}") from None
        if spec not in prof.hierarchies:
            prof.hierarchies.append(spec)
    authentic = _str(table.get("authentic", prof.authentic), "cgroup.authentic", name)
    if authentic not in ("prefer", "never"):
        raise ProfileError(f"profile {name}: cgroup.authentic must be 'prefer' or 'never'")
    prof.authentic = authentic
    subtree = _str(table.get("subtree", prof.subtree), "cgroup.subtree", name)
    if subtree and (subtree in (".", "..") or any(c in subtree for c in "/\0\n")):
        raise ProfileError(f"profile {name}: cgroup.subtree must be one cgroup name (no '/'), not {subtree!r}")
    prof.subtree = subtree
    runtimes = table.get("runtimes", prof.runtimes)
    if not isinstance(runtimes, bool):
        raise ProfileError(f"profile {name}: cgroup.runtimes must be true or false")
    prof.runtimes = runtimes


def _entry(path: str, name: str) -> str:
    parts = path.split("/")
    if path.startswith("/") or any(p in ("", ".", "..") for p in parts) or any(c in path for c in "\0\n"):
        raise ProfileError(f"profile {name}: bad /proc/sys entry {path!r} (relative, no '..')")
    return path


def _read_procsys(prof: Profile, table, name: str) -> None:
    _check_keys(table, {"entries", "writable"}, "procsys", name)
    for e in _list(table, "entries", name):
        if _entry(e, name) not in prof.procsys_entries:
            prof.procsys_entries.append(e)
    for e in _list(table, "writable", name):
        if _entry(e, name) not in prof.procsys_writable:
            prof.procsys_writable.append(e)
        if e not in prof.procsys_entries:
            prof.procsys_entries.append(e)


def _abs(path: str, name: str) -> str:
    if not path.startswith("/") or ".." in path.split("/") or any(c in path for c in "\0\n"):
        raise ProfileError(f"profile {name}: path {path!r} must be absolute, without '..'")
    return os.path.normpath(path)


def _read_files(prof: Profile, table, name: str) -> None:
    if not isinstance(table, dict):
        raise ProfileError(f"profile {name}: [files] must be a table")
    for path, spec in table.items():
        path = _abs(path, name)
        _check_keys(spec, {"kind", "content", "mode", "optional"}, f'files."{path}"', name)
        kind = _str(spec.get("kind", "text"), "kind", name)
        if kind not in ("text", "devnull"):
            raise ProfileError(f"profile {name}: files.{path}.kind must be 'text' or 'devnull'")
        mode = spec.get("mode", 0o444)
        if not isinstance(mode, int) or not 0 <= mode <= 0o777:
            raise ProfileError(f"profile {name}: files.{path}.mode must be an integer like 0o644")
        optional = spec.get("optional", False)
        if not isinstance(optional, bool):
            raise ProfileError(f"profile {name}: files.{path}.optional must be true or false")
        prof.files[path] = FileSpec(path, kind, _str(spec.get("content", ""), "content", name), mode, optional)


def _read_limits(prof: Profile, table, name: str) -> None:
    _check_keys(table, set(KNOWN), "limits", name)
    for key, value in table.items():
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise ProfileError(f"profile {name}: limits.{key} must be a string or a number")
        prof.limits[key] = str(value)


def _read_procviews(prof: Profile, table, name: str) -> None:
    _check_keys(table, {"views", "limits"}, "procviews", name)
    if not table:
        return
    views = _list(table, "views", name) if "views" in table else list(VIEW_PATHS)
    unknown = [v for v in views if v not in VIEW_PATHS]
    if unknown:
        raise ProfileError(f"profile {name}: unknown view {unknown[0]!r} in procviews.views "
                           f"(known: {', '.join(VIEW_PATHS)})")
    limits = _str(table.get("limits", "reader"), "procviews.limits", name)
    if limits not in VIEW_MODES:
        raise ProfileError(f"profile {name}: procviews.limits must be {' or '.join(repr(m) for m in VIEW_MODES)}")
    prof.procviews = [v for v in dict.fromkeys(prof.procviews + views)]
    prof.procviews_limits = limits

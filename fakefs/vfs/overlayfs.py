"""The tree behind profile overlays: one merged view per covered directory
(real entries pass through, synthetic /proc/sys entries and node files are
added), all under one staging root that the mount manager bind-mounts from.

The real directories are opened here, when the daemon starts: before the
mount manager places anything over them.
"""

from __future__ import annotations

import errno
import os

from fakefs.host.facts import cap_last_cap
from fakefs.host.procfs import read_text
from fakefs.model.cftype import WriteContext
from fakefs.model.errors import KernelError
from fakefs.model.procsys import SysctlEntry, build_entries, perm_allows
from fakefs.vfs.mergedfs import DirFd, MergedDir, RealDir, StagingRoot, SyntheticFile

PROC_SYS = "/proc/sys"


class SysctlFile(SyntheticFile):
    """A synthetic /proc/sys entry with the kernel's parser and permission rule."""

    def __init__(self, entry: SysctlEntry, values: list, override: bool):
        self.entry = entry
        self.values = values
        # Called after every accepted write, before it returns: the daemon
        # saves the values (runtime/overlaystate.py).
        self.on_written = None
        super().__init__(("sysctl", entry.path), entry.mode, self._render, self._write, self._check_open,
                         overrides_real=override)

    def _render(self) -> str:
        return self.entry.handler.read(self.values)

    def _check_open(self, writing: bool, ctx: WriteContext) -> None:
        # proc_sys_permission(): the mode bits apply to root too (no override).
        if not perm_allows(self.entry.mode, writing, ctx.uid, ctx.gid == 0):
            raise KernelError(errno.EACCES, self.entry.path)

    def _write(self, data: bytes, ctx: WriteContext) -> int:
        written = self.entry.handler.write(self.values, data.decode("latin-1"), 0)
        if self.on_written is not None:
            self.on_written()
        return written


def _insert(tree: dict, parts: list[str], node) -> None:
    for p in parts[:-1]:
        tree = tree.setdefault(p, {})
    tree[parts[-1]] = node


def build_overlay_root(spec: dict) -> StagingRoot:
    host: dict[str, str] = {"kernel/cap_last_cap": f"{cap_last_cap()}\n"}
    for view in spec["views"].values():
        for e in view["entries"]:
            if e["kind"] == "procsys":
                real = read_text(os.path.join(PROC_SYS, e["path"]))
                if real is not None:
                    host[e["path"]] = real  # seed an override with the real value
    host["kernel/osrelease"] = os.uname().release + "\n"
    entries = build_entries(host)
    children = {}
    for name, view in spec["views"].items():
        root = view["real"]
        synthetic: dict = {}
        for e in view["entries"]:
            if e["kind"] == "procsys":
                entry = entries.get(e["path"])
                if entry is None:
                    raise ValueError(f"no synthetic /proc/sys entry {e['path']!r}")
                node = SysctlFile(entry, list(entry.default), bool(e.get("override")))
                abspath = os.path.join(PROC_SYS, e["path"])
            else:
                abspath = e["path"]
                node = SyntheticFile.text(("file", abspath), e.get("content", ""), e.get("mode", 0o444))
            _insert(synthetic, os.path.relpath(abspath, root).split("/"), node)
        children[name] = MergedDir(RealDir(DirFd.open(root)), synthetic, key=("view", name))
    return StagingRoot(children)

"""Cgroups and hierarchies: the tree, control-file dispatch and membership.

A :class:`Hierarchy` is one cgroup v1 mount: a set of controllers (or a
name such as ``name=systemd``) and a tree of :class:`Cgroup` nodes. Rules
that are the same for every controller (write size, mkdir/rmdir/rename,
attaching tasks) live here; controller-specific rules live in
``controllers/``.
"""

from __future__ import annotations

import errno
import os
from typing import TYPE_CHECKING, Any, Iterator

from fakefs.model.cftype import ControlFile, Controller, FileAttrs, WriteContext
from fakefs.model.errors import KernelError, einval
from fakefs.model.controllers.core import CORE
from fakefs.model.kparse import INT_MAX, PATH_MAX, c_string, kernel_strstrip, kstrtoll

if TYPE_CHECKING:
    from fakefs.model.tree import CgroupModel

# The files whose writes move tasks: journaled as the attach they made.
MEMBERSHIP_FILES = ("cgroup.procs", "tasks")


def name_bytes(name: str) -> bytes:
    """A cgroup name as the kernel has it. Names are bytes there (any byte
    but NUL and '/'); here they are str decoded as the transports decode
    them (os.fsdecode: bytes that are not UTF-8 become lone surrogates), so
    this is the way back to the exact bytes."""
    return os.fsencode(name)


class Cgroup:
    __slots__ = ("hierarchy", "name", "parent", "children", "state", "attrs", "serial", "removed")

    def __init__(self, hierarchy: "Hierarchy", name: str, parent: "Cgroup | None", serial: int):
        self.hierarchy = hierarchy
        self.name = name
        self.parent = parent
        self.children: dict[str, Cgroup] = {}
        self.state: dict[str, Any] = {}
        self.attrs: dict[str, FileAttrs] = {}
        # Unique for the model's lifetime: lets backends give stable inodes.
        self.serial = serial
        # Set by rmdir; open handles and cached inodes may still point here.
        self.removed = False

    @property
    def is_root(self) -> bool:
        """The kernel's root cgroup: root-only files and rules apply. The top
        of a fake subtree (``top_is_root=False``) stands for a real child
        cgroup and follows non-root rules."""
        return self.parent is None and self.hierarchy.top_is_root

    @property
    def is_top(self) -> bool:
        """The mounted directory itself: it cannot be removed or renamed."""
        return self.parent is None

    @property
    def path(self) -> str:
        parts: list[str] = []
        node: Cgroup | None = self
        while node is not None and node.parent is not None:
            parts.append(node.name)
            node = node.parent
        return "/" + "/".join(reversed(parts))

    def ancestors(self) -> Iterator["Cgroup"]:
        node = self.parent
        while node is not None:
            yield node
            node = node.parent

    def descendants(self) -> Iterator["Cgroup"]:
        for child in list(self.children.values()):
            yield child
            yield from child.descendants()

    def __repr__(self) -> str:
        return f"<Cgroup {self.hierarchy.label}:{self.path}>"


class Hierarchy:
    """One v1 hierarchy: its controllers, its tree and who is in which cgroup."""

    def __init__(self, model: "CgroupModel", controllers: list[Controller], name: str | None = None,
                 top_is_root: bool = True):
        self.model = model
        self.controllers = controllers
        self.name = name  # the "name=" option, e.g. "systemd"
        # False: the tree is a subtree mounted below a real cgroup; its top
        # stands for that (non-root) cgroup. Set before the top is created.
        self.top_is_root = top_is_root
        self._all = [CORE] + controllers
        # Tables can depend on the machine (hugetlb page sizes, swap accounting).
        tables = [c.files_for(model.host) for c in self._all]
        self._files = {
            is_root: {f.name: f for files in tables for f in files if f.placement.allows(is_root)}
            for is_root in (True, False)
        }
        self.release_agent = ""
        # Non-root membership by thread id; threads not listed are in the root.
        self.placed: dict[int, Cgroup] = {}
        self.root = self._new_cgroup("", None)

    # -- identity -----------------------------------------------------------
    @property
    def label(self) -> str:
        """The super options as mountinfo shows them: ``cpu,cpuacct``, ``name=systemd``."""
        parts = [c.name for c in self.controllers]
        if self.name:
            parts.append(f"name={self.name}")
        return ",".join(parts)

    def controller(self, name: str) -> Controller | None:
        return next((c for c in self.controllers if c.name == name), None)

    # -- tree -----------------------------------------------------------------
    def _new_cgroup(self, name: str, parent: Cgroup | None) -> Cgroup:
        cg = Cgroup(self, name, parent, self.model.next_serial())
        for ctrl in self._all:
            cg.state[ctrl.name] = ctrl.new_state(cg)
        return cg

    def files(self, cg: Cgroup) -> dict[str, ControlFile]:
        return self._files[cg.is_root]

    def resolve(self, path: str) -> Cgroup:
        node = self.root
        for part in path.strip("/").split("/"):
            if not part:
                continue
            try:
                node = node.children[part]
            except KeyError:
                raise KernelError(errno.ENOENT, path) from None
        return node

    def _check_name(self, parent: Cgroup, name: str) -> None:
        if name in ("", ".", "..") or "/" in name or "\0" in name:
            raise einval(f"bad name {name!r}")
        if len(name_bytes(name)) + len(name_bytes(parent.path)) + 1 >= PATH_MAX - 40:
            raise KernelError(errno.ENAMETOOLONG, name)
        if "\n" in name:
            # cgroup_mkdir: names with a newline would corrupt /proc/PID/cgroup.
            raise einval("newline in cgroup name")
        if name in parent.children or name in self.files(parent):
            raise KernelError(errno.EEXIST, name)

    def mkdir(self, parent: Cgroup, name: str) -> Cgroup:
        self._check_name(parent, name)
        child = self._new_cgroup(name, parent)
        parent.children[name] = child
        self.model.changed({"op": "mkdir", "h": self.label, "path": parent.path, "name": name})
        return child

    def rmdir(self, cg: Cgroup) -> None:
        if cg.is_top:
            raise KernelError(errno.EBUSY, "root cgroup")
        if cg.children or self.tids_in(cg):
            # cgroup_destroy_locked: populated or has children
            raise KernelError(errno.EBUSY, cg.path)
        assert cg.parent is not None
        del cg.parent.children[cg.name]
        cg.removed = True
        self.model.changed({"op": "rmdir", "h": self.label, "path": cg.path})

    def rename(self, cg: Cgroup, new_parent: Cgroup, new_name: str) -> None:
        """cgroup1_rename: only a rename within the same parent is allowed."""
        if cg.is_top:
            raise KernelError(errno.EBUSY, "root cgroup")
        if new_parent is not cg.parent:
            raise KernelError(errno.EIO, "cgroup1 rename across parents")
        if new_name == cg.name:
            return
        self._check_name(new_parent, new_name)
        old_path = cg.path
        del new_parent.children[cg.name]
        cg.name = new_name
        new_parent.children[new_name] = cg
        self.model.changed({"op": "rename", "h": self.label, "path": old_path, "name": new_name})

    # -- control files --------------------------------------------------------
    def read_file(self, cg: Cgroup, name: str) -> str:
        spec = self.files(cg).get(name)
        if spec is None:
            raise KernelError(errno.ENOENT, name)
        return spec.render(cg)

    def write_file(self, cg: Cgroup, name: str, data: bytes, ctx: WriteContext = WriteContext()) -> int:
        """One write() call: one command, as kernfs delivers it."""
        spec = self.files(cg).get(name)
        if spec is None:
            raise KernelError(errno.ENOENT, name)
        if len(data) > spec.max_write_len:
            raise KernelError(errno.E2BIG, "write larger than the file accepts")
        if not data:
            return 0
        if spec.write is None:
            raise einval("file has no write handler")
        # kernfs hands the handler a NUL-terminated copy: C parsers stop at
        # the first NUL. latin-1 maps every other byte to one char, so junk
        # bytes still fail the parsers.
        text = c_string(data.decode("latin-1"))
        spec.write(cg, text, ctx)
        # Membership is journaled by attach(): what a pid meant when written.
        self.model.changed(None if name in MEMBERSHIP_FILES else
                           {"op": "write", "h": self.label, "path": cg.path, "file": name, "data": text,
                            "ctx": [ctx.tid, ctx.uid, ctx.gid]})
        return len(data)

    def set_attrs(self, cg: Cgroup, name: str, mode: int | None, uid: int | None, gid: int | None,
                  ctime_ns: int | None = None) -> None:
        """chmod/chown of a cgroup's directory (``name`` ".") or control file,
        at ``ctime_ns``."""
        a = cg.attrs.setdefault(name, FileAttrs())
        if mode is not None:
            a.mode = mode & 0o7777
        if uid is not None:
            a.uid = uid
        if gid is not None:
            a.gid = gid
        a.set_times(None, None, ctime_ns)
        self.model.changed({"op": "attrs", "h": self.label, "path": cg.path, "file": name,
                            "mode": a.mode, "uid": a.uid, "gid": a.gid, "ctime": a.ctime_ns})

    def set_times(self, cg: Cgroup, name: str, atime_ns: int | None, mtime_ns: int | None,
                  ctime_ns: int | None) -> None:
        """utime of a cgroup's directory or control file (kernfs keeps the
        times it is given: kernfs_iattrs)."""
        a = cg.attrs.setdefault(name, FileAttrs())
        a.set_times(atime_ns, mtime_ns, ctime_ns)
        self.model.changed({"op": "times", "h": self.label, "path": cg.path, "file": name,
                            "atime": a.atime_ns, "mtime": a.mtime_ns, "ctime": a.ctime_ns})

    def set_xattr(self, cg: Cgroup, name: str, xname: str, value: bytes | None) -> None:
        """Store (None: remove) an extended attribute of a cgroup's directory
        or control file; the rules are the VFS layer's (vfs/ops.py)."""
        cg.attrs.setdefault(name, FileAttrs()).set_xattr(xname, value)
        self.model.changed({"op": "xattr", "h": self.label, "path": cg.path, "file": name, "name": xname,
                            "value": None if value is None else value.decode("latin-1")})

    # -- membership -----------------------------------------------------------
    def _live(self, tid: int) -> bool:
        if self.model.processes.exists(tid):
            return True
        self.placed.pop(tid, None)
        return False

    def cgroup_of(self, tid: int) -> Cgroup:
        return self.placed.get(tid, self.root)

    def tids_in(self, cg: Cgroup) -> list[int]:
        if cg.is_root:
            others = self.placed
            return sorted(t for t in self.model.processes.all_tids() if t not in others or others[t] is cg)
        return sorted(t for t, where in list(self.placed.items()) if where is cg and self._live(t))

    def tgids_in(self, cg: Cgroup) -> list[int]:
        procs = self.model.processes
        return sorted({tg for t in self.tids_in(cg) if (tg := procs.tgid_of(t)) is not None})

    def subtree_tids(self, cg: Cgroup) -> list[int]:
        result = list(self.tids_in(cg))
        for d in cg.descendants():
            result.extend(self.tids_in(d))
        return result

    def parse_pid_write(self, text: str, ctx: WriteContext) -> int:
        """__cgroup1_procs_write: strstrip, kstrtoint base 0, 0 = the writer."""
        try:
            value = kstrtoll(kernel_strstrip(text))
        except KernelError:
            value = -1  # cgroup_procs_write_start(): any kstrtoint failure is EINVAL
        if value < 0 or value > INT_MAX:
            raise einval("bad pid")
        if value == 0:
            if not ctx.tid:
                raise KernelError(errno.ESRCH, "writer unknown")
            return ctx.tid
        return value

    def attach(self, cg: Cgroup, tid: int, threadgroup: bool, writer_uid: int = 0) -> None:
        procs = self.model.processes
        if not procs.exists(tid):
            raise KernelError(errno.ESRCH, str(tid))
        if writer_uid != 0:
            # __cgroup1_procs_write(): a non-root writer may only move tasks
            # whose real or saved uid is its own, whatever the file's mode.
            uids = procs.owner_uids(tid)
            if uids is None or writer_uid not in uids:
                raise KernelError(errno.EACCES, f"task {tid} belongs to another user")
        if threadgroup:
            tgid = procs.tgid_of(tid) or tid
            tids = procs.threads_of(tgid) or [tid]
        else:
            tids = [tid]
        for ctrl in self.controllers:
            ctrl.can_attach(cg, tids)
        for t in tids:
            if cg.is_root:
                self.placed.pop(t, None)
            else:
                self.placed[t] = cg
        self.model.changed({"op": "attach", "h": self.label, "path": cg.path, "tids": tids})
        if self.model.on_attach is not None:
            self.model.on_attach(tids)

    def forked(self, parent_tid: int, child_tid: int) -> bool:
        """A new process or thread starts in its parent's cgroup
        (cgroup_post_fork); a stale entry for a reused tid is dropped.
        Returns whether membership changed."""
        where = self.placed.get(parent_tid)
        if where is None or where.removed:
            return self.placed.pop(child_tid, None) is not None
        self.placed[child_tid] = where
        return True

    def exited(self, tid: int) -> bool:
        return self.placed.pop(tid, None) is not None

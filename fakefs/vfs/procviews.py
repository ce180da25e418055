"""lxcfs-style views: files rendered for the process that reads them, from
the limits of its cgroups, each bind-mounted over a real /proc file (or
/sys/devices/system/cpu/online) as lxcfs does.

Which cgroup: the FUSE request names the reading thread. For a controller
the fake tree serves (``fakefs run``), the fake cgroup it was placed in
(``cgroup.procs``/``tasks`` writes, fork inheritance), or else the fake
cgroup at the path its real ``/proc/PID/cgroup`` names (where ``fakefs run``
creates the command's cgroups; in gVisor no fork events place children),
or else the root. For any other controller, its real cgroup, read from the
real hierarchy (a private mount: the fake may cover /sys/fs/cgroup). In
``sandbox`` mode (profile ``node-capacity``) every reader sees the cgroups
fakefs itself was started in.

The rendering rules are in :mod:`fakefs.model.procviews`; the machine's own
files are read through private handles (:mod:`fakefs.host.hostfiles`), never
through the paths the views cover.
"""

from __future__ import annotations

import errno
import os
import stat
import time
from dataclasses import dataclass

import trio

from fakefs.host.hostfiles import PrivateDir, ProcessInfo, RealCgroups, private_cpu_dir, private_proc
from fakefs.host.procfs import stat_state
from fakefs.model import procviews as pv
from fakefs.model.cftype import WriteContext
from fakefs.model.errors import KernelError
from fakefs.model.kparse import parse_cpulist
from fakefs.vfs.mergedfs import StagingRoot
from fakefs.vfs.nodes import Attr, Node


@dataclass(frozen=True)
class CgroupRef:
    """A cgroup of one controller: in the fake tree or in the real hierarchy."""

    source: str  # "fake" | "real"
    path: str

    def ancestors(self) -> list["CgroupRef"]:
        """This cgroup and those above it, up to the root."""
        out, path = [self], self.path
        while path not in ("/", ""):
            path = os.path.dirname(path)
            out.append(CgroupRef(self.source, path))
        return out


class ReaderCgroups:
    """Where a reader's cgroups are, and their control files' text.

    ``fixed``: every reader is in these cgroups (sandbox mode: the real
    cgroups fakefs runs in). ``default``: the cgroups of a reader not known
    by its thread (a rendering for no one in particular, for the file copies
    gVisor gets): resolved like a reader's real paths."""

    def __init__(self, real: RealCgroups, model=None, fixed: dict[str, str] | None = None,
                 default: dict[str, str] | None = None):
        self.real = real
        self.model = model
        self.fixed = fixed
        self.default = default or {}
        self.fake = {c.name for m in model.mounts for c in m.hierarchy.controllers} if model is not None else set()

    def locate(self, tid: int, controllers=pv.VIEW_CONTROLLERS) -> dict[str, CgroupRef]:
        if self.fixed is not None:
            return {c: CgroupRef("real", self.fixed[c]) for c in controllers if c in self.fixed}
        if tid <= 0:
            # no thread named (or one outside our PID namespace)
            return self._at_paths(self.default, {}, controllers)
        real_paths: dict[str, str] | None = None
        placed = {}
        for c in controllers:
            if c in self.fake:
                cg = self.model.hierarchy(c).placed.get(tid)
                if cg is not None and not cg.removed:
                    placed[c] = CgroupRef("fake", cg.path)
                    continue
            if real_paths is None:
                real_paths = self.real.cgroups_of(tid)
        return self._at_paths(real_paths or {}, placed, controllers)

    def _at_paths(self, paths: dict[str, str], placed: dict[str, CgroupRef], controllers) -> dict[str, CgroupRef]:
        """The cgroups at a reader's real paths: in the fake tree for a
        controller it serves (its root when it has no such cgroup)."""
        out = {}
        for c in controllers:
            if c in placed:
                out[c] = placed[c]
            elif c in self.fake:
                out[c] = CgroupRef("fake", self._fake_at(self.model.hierarchy(c), paths.get(c)).path)
            elif c in paths:
                out[c] = CgroupRef("real", paths[c])
        return out

    @staticmethod
    def _fake_at(h, path: str | None):
        if path:
            try:
                return h.resolve(path)
            except KernelError:
                pass
        return h.root

    def read(self, ref: CgroupRef, controller: str, name: str) -> str | None:
        if ref.source == "real":
            return self.real.read(controller, ref.path, name)
        h = self.model.hierarchy(controller)
        try:
            return h.read_file(h.resolve(ref.path), name)
        except KernelError:
            return None

    def is_fake_root(self, ref: CgroupRef, controller: str) -> bool:
        """The fake tree's root cgroup: cgroup v1 keeps no limit there (and
        its statistics are the whole machine's, costly to gather)."""
        return ref.source == "fake" and ref.path == "/" and self.model.hierarchy(controller).top_is_root

    def generation(self) -> int:
        """Changes whenever the fake tree may have (a limit written, a move)."""
        return self.model.generation if self.model is not None else 0

    def tids(self, ref: CgroupRef, controller: str) -> list[int]:
        """Threads in the cgroup and below it."""
        if ref.source == "fake":
            h = self.model.hierarchy(controller)
            try:
                return h.subtree_tids(h.resolve(ref.path))
            except KernelError:
                return []
        return self.real.subtree_tids(controller, ref.path)


class ProcViews:
    """Renders each view for a reading thread."""

    def __init__(self, cgroups: ReaderCgroups, proc: PrivateDir, cpu_dir: PrivateDir):
        self.cgroups = cgroups
        self.proc = proc
        self.cpu_dir = cpu_dir
        self.info = ProcessInfo(proc)
        self.user_hz = os.sysconf("SC_CLK_TCK")
        self.own_pidns = self.info.pid_namespace("self")
        self.cpu_history = pv.CpuViewHistory()
        self.load_history = pv.LoadHistory()
        self._recent: dict = {}

    # -- the machine's files ------------------------------------------------------
    def host(self, name: str) -> str:
        text = self.cpu_dir.read("online") if name == "cpu-online" else self.proc.read(name)
        if text is None:
            raise KernelError(errno.ENOENT, f"{pv.VIEW_PATHS[name]} cannot be read here")
        return text

    def online(self) -> frozenset[int]:
        return frozenset(parse_cpulist(self.host("cpu-online").strip(), 1 << 16))

    # -- the reader's figures ----------------------------------------------------------
    def memory(self, refs: dict[str, CgroupRef], host_meminfo: str) -> pv.MemoryFigures | None:
        ref = refs.get("memory")
        if ref is None or self.cgroups.is_fake_root(ref, "memory"):
            return None
        text = self.cgroups.read(ref, "memory", "memory.stat")
        if text is None:
            return None
        limit, memsw_limit = pv.stat_limits(text)
        if not pv.memory_is_limited(limit, memsw_limit, host_meminfo):
            return None  # the machine's file: no need to read more
        read = lambda name: pv.parse_int(self.cgroups.read(ref, "memory", name))  # noqa: E731
        return pv.MemoryFigures(limit=limit, usage=read("memory.usage_in_bytes") or 0, stat=pv.parse_keyed(text),
                                memsw_limit=memsw_limit, memsw_usage=read("memory.memsw.usage_in_bytes"),
                                swappiness=read("memory.swappiness") or 0)

    def cpus(self, refs: dict[str, CgroupRef], online: frozenset[int]) -> pv.CpuFigures | None:
        cpuset = online
        ref = refs.get("cpuset")
        if ref is not None:
            text = self.cgroups.read(ref, "cpuset", "cpuset.effective_cpus")
            if text is None:
                text = self.cgroups.read(ref, "cpuset", "cpuset.cpus")
            if text is not None and text.strip():
                cpuset = frozenset(parse_cpulist(text.strip(), 1 << 16))
        quotas = []
        ref = refs.get("cpu")
        if ref is not None:
            for up in ref.ancestors():
                quota = pv.parse_int(self.cgroups.read(up, "cpu", "cpu.cfs_quota_us"))
                if quota is None or quota <= 0:
                    continue
                period = pv.parse_int(self.cgroups.read(up, "cpu", "cpu.cfs_period_us"))
                if period:
                    quotas.append((quota, period))
        figures = pv.CpuFigures(cpuset, pv.binding_quota(quotas))
        return figures if pv.cpus_are_limited(figures, online) else None

    # -- rendering ------------------------------------------------------------------------
    # The controllers each view reads.
    NEEDS = {"meminfo": ("memory",), "swaps": ("memory",), "cpu-online": ("cpuset", "cpu"),
             "cpuinfo": ("cpuset", "cpu"), "stat": ("cpuset", "cpu", "cpuacct"), "uptime": (),
             "loadavg": ("cpuset", "cpu"), "diskstats": ("blkio",)}
    # A rendering is reused for this long by the same thread in the same
    # cgroups (while the fake tree is unchanged): the GETATTR and OPEN of one
    # read then agree on the size (gVisor cuts reads at st_size), and a burst
    # of reads costs one rendering.
    REUSE_S = 0.1

    def render(self, name: str, tid: int) -> str:
        refs = self.cgroups.locate(tid, self.NEEDS[name])
        key = (name, tid, tuple(sorted(refs.items())), self.cgroups.generation())
        now = time.monotonic()
        hit = self._recent.get(key)
        if hit is not None and now - hit[0] < self.REUSE_S:
            return hit[1]
        text = getattr(self, "_" + name.replace("-", "_"))(tid, refs)
        if len(self._recent) > 1024:
            self._recent = {k: v for k, v in self._recent.items() if now - v[0] < self.REUSE_S}
        self._recent[key] = (now, text)
        return text

    def _meminfo(self, tid: int, refs: dict[str, CgroupRef]) -> str:
        host = self.host("meminfo")
        return pv.render_meminfo(host, self.memory(refs, host))

    def _swaps(self, tid: int, refs: dict[str, CgroupRef]) -> str:
        host, meminfo = self.host("swaps"), self.host("meminfo")
        return pv.render_swaps(host, meminfo, self.memory(refs, meminfo))

    def _cpu_online(self, tid: int, refs: dict[str, CgroupRef]) -> str:
        host, online = self.host("cpu-online"), self.online()
        return pv.render_cpu_online(host, self.cpus(refs, online), online)

    def _cpuinfo(self, tid: int, refs: dict[str, CgroupRef]) -> str:
        host, online = self.host("cpuinfo"), self.online()
        return pv.render_cpuinfo(host, self.cpus(refs, online), online)

    def _stat(self, tid: int, refs: dict[str, CgroupRef]) -> str:
        host, online = self.host("stat"), self.online()
        cpu = self.cpus(refs, online)
        if cpu is None:
            return host
        usage = None
        acct = refs.get("cpuacct")
        if acct is not None:
            text = self.cgroups.read(acct, "cpuacct", "cpuacct.usage_all")
            if text is not None:
                usage = pv.parse_usage_all(text, self.user_hz)
        key = (acct.source, acct.path) if acct is not None else ("none", "")
        return pv.render_stat(self.cpu_history, key, host, usage, cpu, online)

    def _uptime(self, tid: int, refs: dict[str, CgroupRef]) -> str:
        host = self.host("uptime")
        if tid <= 0 or self.info.pid_namespace(tid) in (None, self.own_pidns):
            return host  # the reader's PID namespace started with the machine's
        init = self.info.namespace_init(tid)
        age = self.info.age_s(init) if init is not None else None
        if age is None:
            return host
        busy = 0.0
        acct = self.cgroups.locate(init, ("cpuacct",)).get("cpuacct")
        if acct is not None:
            busy = (pv.parse_int(self.cgroups.read(acct, "cpuacct", "cpuacct.usage")) or 0) / pv.NSEC_PER_SEC
        return pv.render_uptime(age, busy)

    def _loadavg(self, tid: int, refs: dict[str, CgroupRef]) -> str:
        host, online = self.host("loadavg"), self.online()
        if self.cpus(refs, online) is None or "cpu" not in refs:
            return host
        ref = refs["cpu"]
        return self.load_history.render((ref.source, ref.path), time.monotonic(), lambda: self._count(ref))

    def _count(self, ref: CgroupRef) -> pv.TaskCount:
        active = total = last = 0
        for t in self.cgroups.tids(ref, "cpu"):
            text = self.info.read(f"{t}/stat")
            if not text:
                continue
            total += 1
            last = max(last, t)
            if stat_state(text) in ("R", "D"):
                active += 1
        return pv.TaskCount(active, total, last)

    def _diskstats(self, tid: int, refs: dict[str, CgroupRef]) -> str:
        host = self.host("diskstats")
        ref = refs.get("blkio")
        if ref is None or ref.path in ("/", ""):
            return host
        read = lambda name: self.cgroups.read(ref, "blkio", name)  # noqa: E731
        return pv.render_diskstats(host, read("blkio.throttle.io_serviced_recursive"),
                                   read("blkio.throttle.io_service_bytes_recursive"))


class ViewFile(Node):
    """One view: procfs's (or sysfs's) mode, size and errors; the content is
    rendered for the process that opens it (a read at another offset renders
    anew, as seq_file does)."""

    volatile = True
    entry_stable = True  # the names never change
    is_dir = False

    def __init__(self, name: str, views: ProcViews):
        self.name = name
        self.views = views
        self.key = ("procview", name)
        self.sysfs = pv.VIEW_PATHS[name].startswith("/sys/")
        self.mtime_ns = time.time_ns()

    def attr(self) -> Attr:
        return Attr(stat.S_IFREG | 0o444, size=0, mtime_ns=self.mtime_ns)

    def attr_for(self, ctx: WriteContext) -> Attr:
        # procfs reports size 0 and sysfs a page, but gVisor's FUSE client
        # cuts reads at st_size: the size of what this reader reads.
        try:
            size = len(self.render_for(ctx))
        except KernelError:
            size = 0
        return Attr(stat.S_IFREG | 0o444, size=size, mtime_ns=self.mtime_ns)

    def check_open(self, writing: bool, ctx: WriteContext) -> None:
        # kernfs refuses a write open of a 0444 attribute even to root; procfs
        # lets root open it and fails the write (EIO, measured).
        if writing and self.sysfs:
            raise KernelError(errno.EACCES, self.name)

    def write(self, data: bytes, ctx: WriteContext) -> int:
        raise KernelError(errno.EIO, self.name)

    def truncate(self, size: int) -> None:
        raise KernelError(errno.EACCES if self.sysfs else errno.EPERM, self.name)

    def render(self) -> bytes:
        return self.render_for(WriteContext())

    def render_for(self, ctx: WriteContext) -> bytes:
        return self.views.render(self.name, ctx.tid).encode("latin-1")


class ViewsDir(StagingRoot):
    """A directory of view files."""

    def __init__(self, views: ProcViews, names):
        super().__init__({name: ViewFile(name, views) for name in names})
        self.key = ("procviews-dir",)
        self.views = views
        # trio tasks the serving loop runs next to the transport
        self.background_tasks: list = []


class CgroupRootWithViews(Node):
    """A cgroup tree's root with the views directory next to its hierarchies
    (the views read the tree's own model). Everything else is the tree's."""

    def __init__(self, inner: Node, views: ViewsDir):
        self.inner = inner
        self.views_dir = views
        self.key = inner.key

    def __getattr__(self, name):
        return getattr(self.inner, name)

    @property
    def background_tasks(self) -> list:
        return self.views_dir.background_tasks

    @property
    def volatile(self) -> bool:  # type: ignore[override]
        return self.inner.volatile

    @property
    def is_dir(self) -> bool:  # type: ignore[override]
        return True

    def attr(self) -> Attr:
        a = self.inner.attr()
        a.nlink += 1
        return a

    def lookup(self, name: str) -> Node:
        return self.views_dir if name == pv.VIEWS_DIR else self.inner.lookup(name)

    def entries(self) -> list[tuple[str, Node]]:
        return [*self.inner.entries(), (pv.VIEWS_DIR, self.views_dir)]

    def mkdir(self, name: str, ctx: WriteContext) -> Node:
        return self.inner.mkdir(name, ctx)


class ViewCopies:
    """The views as plain files in a tmpfs, rewritten every second for the
    default reader: for FUSE clients that ignore lseek (gVisor's, 2022),
    where procps's free and top, which keep /proc files open and re-read
    them after lseek(0), would read nothing from a FUSE file. Rewritten in
    place (a bind mount holds the file, not its name), every second and
    after every change of the fake tree."""

    INTERVAL_S = 1.0

    def __init__(self, views: ProcViews, names, directory: str):
        self.views = views
        self.names = list(names)
        self.dirfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self.refresh()

    def refresh(self) -> None:
        for name in self.names:
            try:
                data = self.views.render(name, 0).encode("latin-1")
            except KernelError:
                continue
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o444, dir_fd=self.dirfd)
            try:
                os.pwrite(fd, data, 0)
                os.ftruncate(fd, len(data))
            finally:
                os.close(fd)

    async def keep_fresh(self) -> None:
        while True:
            await trio.sleep(self.INTERVAL_S)
            self.refresh()


def check_spec(spec: dict) -> tuple[list[str], str, dict[str, str] | None]:
    """(views, mode, fixed cgroups) of a ``procviews`` spec; ValueError."""
    names = list(spec.get("views") or pv.VIEW_PATHS)
    unknown = [n for n in names if n not in pv.VIEW_PATHS]
    if unknown:
        raise ValueError(f"unknown view {unknown[0]!r} (known: {', '.join(pv.VIEW_PATHS)})")
    mode = spec.get("limits", "reader")
    if mode not in pv.VIEW_MODES:
        raise ValueError(f"procviews limits must be one of {', '.join(pv.VIEW_MODES)}, not {mode!r}")
    cgroups = spec.get("cgroups")
    if cgroups is not None and not isinstance(cgroups, dict):
        raise ValueError("procviews cgroups must be a table of controller = path")
    if mode == "sandbox" and cgroups is None:
        raise ValueError("procviews in sandbox mode need the sandbox's cgroups")
    return names, mode, cgroups


def build_views(spec: dict, model=None) -> ViewsDir:
    """The views a ``procviews`` spec asks for; with ``copies``, also as
    files in that (tmpfs) directory, kept fresh by ``background_tasks``.
    Raises OSError when the machine's files cannot be reached privately (a
    daemon that read them through the paths its views cover would wait on
    itself)."""
    names, mode, cgroups = check_spec(spec)
    proc, cpu_dir = private_proc(), private_cpu_dir()
    if proc is None or cpu_dir is None:
        raise OSError(errno.EPERM, "no private mount of /proc or /sys/devices/system/cpu can be made here")
    if mode == "sandbox":
        readers = ReaderCgroups(RealCgroups(proc), fixed=cgroups)
    else:
        readers = ReaderCgroups(RealCgroups(proc), model, default=cgroups)
    views = ProcViews(readers, proc, cpu_dir)
    root = ViewsDir(views, names)
    if spec.get("copies"):
        copies = ViewCopies(views, names, spec["copies"])
        root.background_tasks.append(copies.keep_fresh)
        if model is not None:
            # a limit written or a cgroup made shows at once, not a second later
            model.on_change.append(copies.refresh)
    return root

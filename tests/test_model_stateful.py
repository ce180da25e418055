"""Stateful property tests of the pure model: random mkdir/rmdir/rename,
writes of good and bad values to every control file, task moves, process
exits and charges, with the kernel's invariants checked after every step.

Any exception other than KernelError from a write, a read or a tree
operation is a bug; so is any state a real kernel could never reach
(a task in two cgroups of one hierarchy, a child cpuset wider than its
parent, a memory limit above the memsw limit, a counter going backwards).
"""

from __future__ import annotations

import errno

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from fakefs.model.cftype import WriteContext
from fakefs.model.cgroup import Cgroup
from fakefs.model.controllers import cpu as cpu_mod
from fakefs.model.controllers import cpuacct as cpuacct_mod
from fakefs.model.controllers import devices as dev_mod
from fakefs.model.controllers import memory as mem_mod
from fakefs.model.controllers.cpuset import CPUSET
from fakefs.model.controllers.freezer import FREEZER
from fakefs.model.errors import KernelError
from fakefs.model.host import HostFacts, StaticProcessTable
from fakefs.model.tree import DEFAULT_HIERARCHIES, CgroupModel

HOST = HostFacts(online_cpus=frozenset({0, 1, 2, 3}), nr_cpu_ids=4, online_mems=frozenset({0, 1}),
                 nr_node_ids=2, block_devices=((8, 0), (253, 0)), net_interfaces=("lo", "eth0"),
                 rdma_devices=("mlx5_0",))

# Names the VFS could hand to mkdir (and some it never would: the model
# must still refuse them with EINVAL, not crash).
GOOD_NAMES = ["a", "b", "c", "job-1", "x.y", "a b", "\xe9t\xe9"]
BAD_NAMES = ["", ".", "..", "a/b", "a\0b", "a\nb", "/"]
NAMES = st.sampled_from(GOOD_NAMES + BAD_NAMES + ["cgroup.procs", "tasks", "cpu.shares"])

# Values that each pass some file's parser, so that writes actually change
# state, mixed with arbitrary bytes.
GOOD_VALUES = [
    b"0", b"1", b"2", b"-1", b"max", b"100000", b"50000", b"25000", b"1000", b"200000", b"2000",
    b"0-1", b"0-3", b"1", b"2-3", b"0,2", b"", b"\n", b"a", b"c 1:3 rwm", b"c 1:3 r", b"b 8:0 rw",
    b"c *:* m", b"a *:* rwm", b"b *:* rwm", b"c 5:* w", b"FROZEN", b"THAWED", b"4096", b"8192\n",
    b"1G", b"1M", b"2M", b"0x10", b" 5 ", b"1\x00junk", b"8:0 1048576", b"8:0 0", b"253:0 100",
    b"0x100001", b"lo 3", b"eth0 1", b"mlx5_0 hca_handle=2 hca_object=max", b"/bin/true",
    b"3 4", b"3 4 100", b"262144", b"-5", b"18446744073709551616", b"99999999999999999999999",
]
VALUES = st.one_of(
    st.sampled_from(GOOD_VALUES),
    st.binary(max_size=40),
    st.integers(min_value=-(1 << 70), max_value=1 << 70).map(lambda n: str(n).encode()),
    st.integers(min_value=0, max_value=2).map(lambda n: b"7" * (4095 + n)),
)

# Values each file's parser accepts, so that limits and masks actually get
# set and the cross-cgroup rules (subsets, ratios, memsw) are exercised.
MEANINGFUL = {
    "cpu,cpuacct": {
        "cpu.cfs_quota_us": [b"-1", b"1000", b"50000", b"100000", b"200000", b"400000"],
        "cpu.cfs_period_us": [b"1000", b"50000", b"100000", b"1000000"],
        "cpu.cfs_burst_us": [b"0", b"1000", b"50000"],
        "cpu.shares": [b"2", b"512", b"1024", b"300000"],
        "cpu.idle": [b"0", b"1"],
        "cpu.rt_runtime_us": [b"-1", b"0", b"10000", b"950000"],
        "cpu.rt_period_us": [b"10000", b"1000000"],
        "cpuacct.usage": [b"0"],
    },
    "cpuset": {
        "cpuset.cpus": [b"", b"0", b"1", b"0-1", b"2-3", b"0-3", b"3"],
        "cpuset.mems": [b"", b"0", b"1", b"0-1"],
        "cpuset.cpu_exclusive": [b"0", b"1"],
        "cpuset.mem_exclusive": [b"0", b"1"],
        "cgroup.clone_children": [b"0", b"1"],
    },
    "memory": {
        "memory.limit_in_bytes": [b"-1", b"4096", b"65536", b"1M", b"256k"],
        "memory.memsw.limit_in_bytes": [b"-1", b"4096", b"65536", b"1M", b"256k"],
        "memory.kmem.tcp.limit_in_bytes": [b"-1", b"65536"],
        "memory.max_usage_in_bytes": [b"0"],
        "memory.memsw.max_usage_in_bytes": [b"0"],
        "memory.failcnt": [b"0"],
    },
    "devices": {
        "devices.deny": [b"a", b"c 1:3 rwm", b"c 1:3 w", b"c *:* m", b"b 8:0 r", b"c 5:* rw"],
        "devices.allow": [b"a", b"c 1:3 rwm", b"c 1:3 r", b"c *:* m", b"b 8:0 rw", b"c 5:1 w"],
    },
    "freezer": {"freezer.state": [b"FROZEN", b"THAWED"]},
    "pids": {"pids.max": [b"max", b"0", b"1", b"3"]},
}

RESET_FILES = {  # a successful write here may lower the counter named
    "memory.max_usage_in_bytes": ("watermark", mem_mod.MEM),
    "memory.memsw.max_usage_in_bytes": ("watermark", mem_mod.MEMSW),
    "memory.kmem.max_usage_in_bytes": ("watermark", mem_mod.KMEM),
    "memory.kmem.tcp.max_usage_in_bytes": ("watermark", mem_mod.TCP),
    "memory.failcnt": ("failcnt", mem_mod.MEM),
    "memory.memsw.failcnt": ("failcnt", mem_mod.MEMSW),
    "memory.kmem.failcnt": ("failcnt", mem_mod.KMEM),
    "memory.kmem.tcp.failcnt": ("failcnt", mem_mod.TCP),
    "cpuacct.usage": ("cpuacct", None),
}


def _kernel_only(fn, *args):
    """Run a model call; a KernelError is a legitimate kernel answer."""
    try:
        return fn(*args)
    except KernelError as exc:
        assert exc.errno in errno.errorcode, exc
        return exc


class CgroupModelMachine(RuleBasedStateMachine):
    # Every hierarchy of a systemd host: the random writes reach every file.
    HIERARCHIES = DEFAULT_HIERARCHIES

    @initialize()
    def setup(self):
        self.procs = StaticProcessTable()
        for tgid, threads in ((100, 1), (200, 3), (300, 2), (400, 1)):
            self.procs.spawn(tgid, threads)
        self.next_tgid = 500
        self.model = CgroupModel(HOST, self.procs, self.HIERARCHIES)
        # A starting tree in every hierarchy, with masks and a task, so that
        # even short step sequences hit the rules between cgroups.
        for m in self.model.mounts:
            h = m.hierarchy
            a = h.mkdir(h.root, "a")
            b = h.mkdir(a, "b")
            c = h.mkdir(h.root, "c")
            if h.controller("cpuset"):
                for cg, cpus, mems in ((a, b"0-3", b"0-1"), (b, b"0-1", b"0"), (c, b"2-3", b"1")):
                    h.write_file(cg, "cpuset.cpus", cpus)
                    h.write_file(cg, "cpuset.mems", mems)
            if h.controller("cpu"):
                h.write_file(a, "cpu.cfs_quota_us", b"200000")
            if h.controller("memory"):
                h.write_file(a, "memory.limit_in_bytes", b"1M")
                h.write_file(a, "memory.memsw.limit_in_bytes", b"2M")
            if h.controller("devices"):
                h.write_file(a, "devices.deny", b"c 1:3 rwm")
            h.write_file(b, "cgroup.procs", b"200")
        self.last_generation = self.model.generation
        # (hierarchy label, serial, counter) -> last value seen
        self.seen: dict[tuple, int] = {}

    # -- picking things ------------------------------------------------------
    def _hierarchy(self, i: int):
        return self.model.mounts[i % len(self.model.mounts)].hierarchy

    def _cgroups(self, h) -> list[Cgroup]:
        return [h.root, *h.root.descendants()]

    def _pick(self, h, ci: int) -> Cgroup:
        """Mostly a child (where the rules between cgroups apply), sometimes the root."""
        children = list(h.root.descendants())
        if ci >= 45 or not children:
            return h.root
        return children[ci % len(children)]

    def _cgroup(self, hi: int, ci: int) -> Cgroup:
        return self._pick(self._hierarchy(hi), ci)

    def _all_tids(self) -> list[int]:
        return sorted(self.procs.all_tids())

    # -- rules ---------------------------------------------------------------
    @rule(hi=st.integers(0, 20), ci=st.integers(0, 50), name=NAMES)
    def mkdir(self, hi, ci, name):
        parent = self._cgroup(hi, ci)
        before = set(parent.children)
        got = _kernel_only(parent.hierarchy.mkdir, parent, name)
        if name in BAD_NAMES:
            assert isinstance(got, KernelError) and got.errno == errno.EINVAL, (name, got)
        if isinstance(got, KernelError):
            assert set(parent.children) == before
        else:
            assert parent.children[name] is got and got.parent is parent

    @rule(hi=st.integers(0, 20), ci=st.integers(0, 50))
    def rmdir(self, hi, ci):
        cg = self._cgroup(hi, ci)
        h = cg.hierarchy
        busy = cg.is_root or bool(cg.children) or bool(h.tids_in(cg))
        got = _kernel_only(h.rmdir, cg)
        if busy:
            assert isinstance(got, KernelError) and got.errno == errno.EBUSY
        else:
            assert got is None and cg.removed

    @rule(hi=st.integers(0, 20), ci=st.integers(0, 50), name=NAMES)
    def rename(self, hi, ci, name):
        cg = self._cgroup(hi, ci)
        if cg.is_root:
            return
        _kernel_only(cg.hierarchy.rename, cg, cg.parent, name)

    @rule(hi=st.integers(0, 20), ci=st.integers(0, 50), fi=st.integers(0, 100), data=VALUES,
          uid=st.sampled_from([0, 0, 0, 65534]))
    def write(self, hi, ci, fi, data, uid):
        cg = self._cgroup(hi, ci)
        h = cg.hierarchy
        names = sorted(h.files(cg))
        name = names[fi % len(names)]
        tid = self._all_tids()[fi % len(self._all_tids())] if self._all_tids() else 0
        got = _kernel_only(h.write_file, cg, name, data, WriteContext(tid=tid, uid=uid, gid=uid))
        if not isinstance(got, KernelError):
            assert got == len(data)
            self._note_reset(cg, name)

    @rule(choice=st.sampled_from([(h, f, v) for h, files in sorted(MEANINGFUL.items())
                                  for f, values in sorted(files.items()) for v in values]),
          ci=st.integers(0, 50))
    def write_meaningful(self, choice, ci):
        hname, name, value = choice
        h = self.model.hierarchy(hname.split(",")[0])
        cg = self._pick(h, ci)
        got = _kernel_only(h.write_file, cg, name, value, WriteContext())
        if not isinstance(got, KernelError):
            self._note_reset(cg, name)

    @rule(hi=st.integers(0, 20), ci=st.integers(0, 50), ti=st.integers(0, 30),
          procs=st.booleans(), form=st.sampled_from(["{}", " {}\n", "0", "{}\x00", "+{}", "-{}"]))
    def move(self, hi, ci, ti, procs, form):
        cg = self._cgroup(hi, ci)
        h = cg.hierarchy
        tids = self._all_tids() + [999999]  # and one that does not exist
        tid = tids[ti % len(tids)]
        data = form.format(tid).encode()
        got = _kernel_only(h.write_file, cg, "cgroup.procs" if procs else "tasks", data,
                           WriteContext(tid=tid))
        if not isinstance(got, KernelError) and form != "-{}":
            moved = self.procs.threads_of(self.procs.tgid_of(tid)) if procs else [tid]
            assert all(h.cgroup_of(t) is cg for t in moved)

    @rule(threads=st.integers(1, 3))
    def spawn(self, threads):
        # Fresh tgids only: pid reuse is a property of the process table.
        self.procs.spawn(self.next_tgid, threads)
        self.next_tgid += 1

    @precondition(lambda self: len(self.procs.processes) > 1)
    @rule(i=st.integers(0, 100))
    def exit(self, i):
        tgids = sorted(self.procs.processes)
        self.procs.exit(tgids[i % len(tgids)])

    @rule(ci=st.integers(0, 50), kind=st.sampled_from(["memory", "swap", "kmem", "tcp"]),
          pages=st.integers(-64, 64))
    def charge_memory(self, ci, kind, pages):
        got = _kernel_only(mem_mod.charge, self._pick(self.model.hierarchy("memory"), ci), kind, pages)
        assert got is None or got.errno == errno.ENOMEM

    @rule(ci=st.integers(0, 50), cpu=st.integers(0, 3), user=st.integers(0, 10**9), system=st.integers(0, 10**9))
    def charge_cpu(self, ci, cpu, user, system):
        cg = self._pick(self.model.hierarchy("cpuacct"), ci)
        cpuacct_mod.CPUACCT.charge(cg, cpu, user, system)

    @rule(hi=st.integers(0, 20), ci=st.integers(0, 50))
    def read_every_file(self, hi, ci):
        cg = self._cgroup(hi, ci)
        h = cg.hierarchy
        for name in sorted(h.files(cg)):
            got = _kernel_only(h.read_file, cg, name)
            if isinstance(got, KernelError):
                # Only files without a read handler, and the event-only file.
                assert got.errno == errno.EINVAL, (name, got)
                assert h.files(cg)[name].read is None or name == "memory.pressure_level", name
            else:
                assert isinstance(got, str)
                got.encode("latin-1")  # what the backends send

    # -- bookkeeping for monotonic counters ------------------------------------
    def _note_reset(self, cg: Cgroup, name: str) -> None:
        what = RESET_FILES.get(name)
        if what is None:
            return
        kind, counter = what
        self.seen.pop((cg.hierarchy.label, cg.serial, kind, counter), None)

    def _monotonic(self, key: tuple, value: int) -> None:
        old = self.seen.get(key)
        assert old is None or value >= old, (key, old, value)
        self.seen[key] = value

    # -- invariants ------------------------------------------------------------
    @invariant()
    def tree_is_consistent(self):
        serials = set()
        for m in self.model.mounts:
            h = m.hierarchy
            for cg in self._cgroups(h):
                assert not cg.removed and cg.hierarchy is h
                assert cg.serial not in serials
                serials.add(cg.serial)
                for name, child in cg.children.items():
                    assert child.name == name and child.parent is cg
                    assert name not in h.files(child.parent)
                    assert name not in ("", ".", "..") and not any(c in name for c in "/\0\n")
            for where in h.placed.values():
                assert not where.removed and not where.is_root

    @invariant()
    def membership_unique_per_hierarchy(self):
        live = set(self.procs.all_tids())
        for m in self.model.mounts:
            h = m.hierarchy
            listed: dict[int, Cgroup] = {}
            for cg in self._cgroups(h):
                for tid in h.tids_in(cg):
                    assert tid in live, (cg, tid)
                    assert tid not in listed, f"{tid} in {listed[tid]} and {cg}"
                    listed[tid] = cg
                    assert h.cgroup_of(tid) is cg
            assert set(listed) == live
            # cgroup.procs lists exactly the thread groups of the tasks
            for cg in self._cgroups(h):
                tgids = {self.procs.tgid_of(t) for t in h.tids_in(cg)}
                assert set(h.tgids_in(cg)) == tgids

    @invariant()
    def cpuset_children_within_parent(self):
        h = self.model.hierarchy("cpuset")
        for cg in h.root.descendants():
            c, p = CPUSET.state(cg), CPUSET.state(cg.parent)
            assert c.cpus <= p.cpus and c.mems <= p.mems, cg
            assert c.cpus <= HOST.online_cpus and c.mems <= HOST.online_mems
            assert c.cpu_exclusive <= p.cpu_exclusive and c.mem_exclusive <= p.mem_exclusive
            for sib in cg.parent.children.values():
                if sib is cg:
                    continue
                s = CPUSET.state(sib)
                if c.cpu_exclusive or s.cpu_exclusive:
                    assert not c.cpus & s.cpus, (cg, sib)
                if c.mem_exclusive or s.mem_exclusive:
                    assert not c.mems & s.mems, (cg, sib)

    @invariant()
    def cpu_quota_within_limited_ancestor(self):
        h = self.model.hierarchy("cpu")

        def walk(cg, parent_ratio):
            s = cpu_mod.CPU.state(cg)
            own = cpu_mod.RUNTIME_INF if cg.is_root else cpu_mod._ratio(s.period_us, s.quota_us)
            if own != cpu_mod.RUNTIME_INF:
                assert parent_ratio == cpu_mod.RUNTIME_INF or own <= parent_ratio, cg
                assert cpu_mod.MIN_PERIOD_US <= s.period_us <= cpu_mod.MAX_PERIOD_US
                assert s.burst_us <= s.quota_us
                parent_ratio = own
            assert cpu_mod.MIN_SHARES <= s.shares <= cpu_mod.MAX_SHARES
            for child in cg.children.values():
                walk(child, parent_ratio)

        walk(h.root, cpu_mod.RUNTIME_INF)

    @invariant()
    def devices_children_within_parent(self):
        h = self.model.hierarchy("devices")
        for cg in h.root.descendants():
            c, p = dev_mod.DEVICES.state(cg), dev_mod.DEVICES.state(cg.parent)
            if p.behavior == dev_mod.DENY:
                # a whitelist child of a whitelist parent: every allow is the parent's too
                assert c.behavior == dev_mod.DENY, cg
                for ex in c.exceptions:
                    assert dev_mod._match(p.exceptions, ex), (cg, ex)
            elif c.behavior == dev_mod.DENY:
                # whitelist child of a blacklist parent: nothing the parent denies
                for ex in c.exceptions:
                    assert not dev_mod._match_partial(p.exceptions, ex), (cg, ex)
            else:
                # both blacklists: the child denies at least what the parent denies
                for ex in p.exceptions:
                    assert dev_mod._match(c.exceptions, ex), (cg, ex)
            for ex in c.exceptions:
                assert ex.access and not ex.access & ~dev_mod.ACC_MASK

    @invariant()
    def memory_limit_not_above_memsw(self):
        h = self.model.hierarchy("memory")
        for cg in self._cgroups(h):
            counters = mem_mod.MEMORY.state(cg).counters
            assert counters[mem_mod.MEM].max <= counters[mem_mod.MEMSW].max, cg
            for name in (mem_mod.MEM, mem_mod.MEMSW, mem_mod.TCP):
                # a limit is never set below what is charged (EBUSY instead)
                assert mem_mod.charged_pages(cg, name) <= counters[name].max, (cg, name)

    @invariant()
    def freezer_states_follow_ancestors(self):
        h = self.model.hierarchy("freezer")
        for cg in h.root.descendants():
            name = FREEZER.state_name(cg)
            assert name in ("THAWED", "FREEZING", "FROZEN")
            frozen_above = any(FREEZER.state(a).self_freezing for a in cg.ancestors())
            assert FREEZER.parent_freezing(cg) == frozen_above
            assert (name != "THAWED") == (frozen_above or FREEZER.state(cg).self_freezing)

    @invariant()
    def counters_monotonic(self):
        assert self.model.generation >= self.last_generation
        self.last_generation = self.model.generation
        pids_h = self.model.hierarchy("pids")
        for cg in pids_h.root.descendants():
            peak = int(pids_h.read_file(cg, "pids.peak"))
            self._monotonic((pids_h.label, cg.serial, "peak", None), peak)
            assert peak >= int(pids_h.read_file(cg, "pids.current"))
        mem_h = self.model.hierarchy("memory")
        for cg in self._cgroups(mem_h):
            for counter in mem_mod.COUNTERS:
                self._monotonic((mem_h.label, cg.serial, "watermark", counter),
                                mem_mod.max_usage_bytes(cg, counter))
                self._monotonic((mem_h.label, cg.serial, "failcnt", counter), mem_mod.failcnt(cg, counter))
                assert mem_mod.max_usage_bytes(cg, counter) >= mem_mod.usage_bytes(cg, counter)
        cpu_h = self.model.hierarchy("cpuacct")
        for cg in self._cgroups(cpu_h):
            usage = int(cpu_h.read_file(cg, "cpuacct.usage"))
            self._monotonic((cpu_h.label, cg.serial, "cpuacct", None), usage)
            # a parent was charged everything its children were, resets aside
            assert usage >= 0


class RulesMachine(CgroupModelMachine):
    """Only the controllers with rules between cgroups: the random steps
    then build deeper trees there, where the invariants have something to check."""

    HIERARCHIES = ("cpu,cpuacct", "cpuset", "memory", "devices", "freezer", "pids")


_SETTINGS = settings(max_examples=60, stateful_step_count=50, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
CgroupModelMachine.TestCase.settings = _SETTINGS
RulesMachine.TestCase.settings = _SETTINGS
TestEveryHierarchy = CgroupModelMachine.TestCase
TestRulesBetweenCgroups = RulesMachine.TestCase

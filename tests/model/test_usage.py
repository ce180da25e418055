"""Live statistics in the pure model, fed by a hand-set stats source
(fakefs.model.usage.FixedStats), and the /proc reader (fakefs.host.stats) over
a synthetic /proc directory."""

import errno
import os

import pytest

from fakefs.model.errors import KernelError
from fakefs.model.host import HostFacts, StaticProcessTable
from fakefs.model.tree import CgroupModel
from fakefs.model.usage import FixedStats, MachineCpu, NullStats, ProcessMemory, ThreadCpu
from fakefs.host.stats import LiveStats

HOST = HostFacts(online_cpus=frozenset({0, 1}), nr_cpu_ids=2, user_hz=100)
MS = 1_000_000
PAGE = 4096


def make(hierarchies=("cpu,cpuacct", "memory", "pids"), stats=None):
    procs = StaticProcessTable()
    model = CgroupModel(host=HOST, processes=procs, hierarchies=list(hierarchies))
    model.stats = stats if stats is not None else FixedStats()
    return model, procs


def r(h, cg, name):
    return h.read_file(cg, name)


def num(h, cg, name):
    return int(r(h, cg, name))


def stat(h, cg, name="memory.stat"):
    return {k: int(v) for k, v in (line.split() for line in r(h, cg, name).splitlines())}


def attach(h, cg, tid):
    h.write_file(cg, "cgroup.procs", str(tid).encode())


def run(stats, tid, tgid=None, runtime=0, user=0, system=0, cpu=0):
    stats.thread_figures[tid] = ThreadCpu(tgid or tid, runtime, user, system, cpu)


# -- cpuacct ----------------------------------------------------------------------
def test_cpu_time_is_charged_to_the_group_and_its_ancestors_from_attach_on():
    model, procs = make()
    stats = model.stats
    h = model.hierarchy("cpuacct")
    a = h.mkdir(h.root, "a")
    b = h.mkdir(a, "b")
    procs.spawn(100)
    run(stats, 100, runtime=500 * MS, user=400 * MS, system=100 * MS, cpu=1)
    attach(h, b, 100)  # measured now: the 500 ms it used before are not b's
    assert num(h, b, "cpuacct.usage") == 0
    run(stats, 100, runtime=800 * MS, user=600 * MS, system=150 * MS, cpu=1)
    assert num(h, b, "cpuacct.usage") == 300 * MS
    assert num(h, a, "cpuacct.usage") == 300 * MS  # hierarchical
    assert num(h, b, "cpuacct.usage_user") == 200 * MS
    assert num(h, b, "cpuacct.usage_sys") == 50 * MS
    assert r(h, b, "cpuacct.usage_percpu") == f"0 {300 * MS} \n"  # on the CPU it ran on
    # cputime_adjust: the 200/50 split scaled to the 300 ms of runtime.
    assert r(h, b, "cpuacct.stat") == "user 24\nsystem 6\n"
    assert r(h, b, "cpuacct.usage_all") == f"cpu user system\n0 0 0\n1 {200 * MS} {50 * MS}\n"


def test_counters_stay_when_a_member_exits_or_moves():
    model, procs = make()
    stats = model.stats
    h = model.hierarchy("cpuacct")
    a, b = h.mkdir(h.root, "a"), h.mkdir(h.root, "b")
    procs.spawn(100)
    run(stats, 100, runtime=0)
    attach(h, a, 100)
    run(stats, 100, runtime=200 * MS)
    assert num(h, a, "cpuacct.usage") == 200 * MS
    run(stats, 100, runtime=300 * MS)
    attach(h, b, 100)  # the 100 ms since the last read are still a's
    run(stats, 100, runtime=450 * MS)
    assert num(h, a, "cpuacct.usage") == 300 * MS
    assert num(h, b, "cpuacct.usage") == 150 * MS
    del stats.thread_figures[100]
    procs.exit(100)
    assert num(h, b, "cpuacct.usage") == 150 * MS
    assert num(h, a, "cpuacct.usage") == 300 * MS
    # A reused tid is a new thread: measured, not charged its whole runtime.
    procs.spawn(100)
    run(stats, 100, tgid=100, runtime=10 * MS)
    attach(h, b, 100)
    run(stats, 100, runtime=15 * MS)
    assert num(h, b, "cpuacct.usage") == 155 * MS


def test_a_thread_born_since_the_last_sync_is_charged_all_its_time():
    model, procs = make()
    stats = model.stats
    h = model.hierarchy("cpuacct")
    a = h.mkdir(h.root, "a")
    procs.spawn(1)
    stats.now = 1000 * MS
    run(stats, 1, runtime=0)
    attach(h, a, 1)  # sync at t=1000 ms
    # A child forked at 1200 ms; fork tracking put it where its parent is.
    procs.spawn(2)
    h.placed[2] = a
    stats.thread_figures[2] = ThreadCpu(2, 300 * MS, start_ns=1200 * MS)
    # One that started long before fakefs saw it is measured only.
    procs.spawn(3)
    h.placed[3] = a
    stats.thread_figures[3] = ThreadCpu(3, 900 * MS, start_ns=10 * MS)
    stats.now = 1600 * MS
    assert num(h, a, "cpuacct.usage") == 300 * MS


def test_reset_then_live_counting_continues():
    model, procs = make()
    stats = model.stats
    h = model.hierarchy("cpuacct")
    a = h.mkdir(h.root, "a")
    procs.spawn(7)
    run(stats, 7, runtime=0)
    attach(h, a, 7)
    run(stats, 7, runtime=50 * MS)
    assert num(h, a, "cpuacct.usage") == 50 * MS
    h.write_file(a, "cpuacct.usage", b"0")
    run(stats, 7, runtime=70 * MS)
    assert num(h, a, "cpuacct.usage") == 20 * MS


def test_root_cpuacct_is_the_machine_and_ignores_reset():
    model, _ = make()
    h = model.hierarchy("cpuacct")
    model.stats.cpu = MachineCpu(user_ns=(1000 * MS, 2000 * MS), system_ns=(100 * MS, 300 * MS))
    assert num(h, h.root, "cpuacct.usage_user") == 3000 * MS
    assert num(h, h.root, "cpuacct.usage_sys") == 400 * MS
    assert num(h, h.root, "cpuacct.usage") == 3400 * MS
    assert r(h, h.root, "cpuacct.usage_percpu") == f"{1100 * MS} {2300 * MS} \n"
    h.write_file(h.root, "cpuacct.usage", b"0")
    assert num(h, h.root, "cpuacct.usage") == 3400 * MS


def test_root_cpuacct_usage_is_the_busy_time_where_known_and_never_goes_back():
    model, _ = make()
    h = model.hierarchy("cpuacct")
    model.stats.cpu = MachineCpu(user_ns=(1000 * MS, 2000 * MS), system_ns=(100 * MS, 300 * MS),
                                 busy_ns=(1200 * MS, 2350 * MS))
    assert num(h, h.root, "cpuacct.usage") == 3550 * MS
    assert num(h, h.root, "cpuacct.usage_user") == 3000 * MS  # still kernel_cpustat
    assert r(h, h.root, "cpuacct.usage_percpu") == f"{1200 * MS} {2350 * MS} \n"
    # A later estimate a rounding lower: the counter stays.
    model.stats.cpu = MachineCpu(user_ns=(1000 * MS, 2000 * MS), system_ns=(100 * MS, 300 * MS),
                                 busy_ns=(1190 * MS, 2400 * MS))
    assert r(h, h.root, "cpuacct.usage_percpu") == f"{1200 * MS} {2400 * MS} \n"


def test_busy_time_is_what_was_neither_idle_iowait_nor_stolen():
    from fakefs.host.stats import busy_time

    s = 1_000_000_000
    # user nice system idle iowait irq softirq steal, after 100 s
    assert busy_time([30 * s, 0, 10 * s, 55 * s, 2 * s, 0, 1 * s, 2 * s], 100 * s) == 41 * s
    # Fields that do not account for the time since boot (gVisor shows
    # zeros; a CPU brought online late): unknown.
    assert busy_time([0] * 8, 100 * s) is None
    assert busy_time([3 * s, 0, 1 * s, 20 * s, 0, 0, 0, 0], 100 * s) is None


def test_cpuacct_stat_adds_up_to_usage_and_never_goes_back():
    from fakefs.model.controllers.cpuacct import cputime_adjust

    assert cputime_adjust(200, 50, 300, (0, 0)) == (240, 60)
    assert cputime_adjust(0, 50, 300, (0, 0)) == (0, 300)
    assert cputime_adjust(200, 0, 300, (0, 0)) == (300, 0)
    assert cputime_adjust(200, 50, 300, (290, 5)) == (290, 10)  # utime may not drop
    assert cputime_adjust(10, 200, 300, (0, 290)) == (10, 290)  # nor stime
    assert cputime_adjust(1, 1, 100, (80, 30)) == (80, 30)  # runtime below what was shown
    model, procs = make()
    h = model.hierarchy("cpuacct")
    a = h.mkdir(h.root, "a")
    procs.spawn(3)
    run(model.stats, 3, runtime=0)
    attach(h, a, 3)
    run(model.stats, 3, runtime=900 * MS, user=100 * MS, system=100 * MS)
    assert r(h, a, "cpuacct.stat") == "user 45\nsystem 45\n"
    h.write_file(a, "cpuacct.usage", b"0")  # prev_cputime is the cgroup's: not reset
    assert r(h, a, "cpuacct.stat") == "user 45\nsystem 45\n"


# -- cpu.stat ------------------------------------------------------------------------
def test_cpu_stat_counts_what_the_quota_would_have_counted():
    model, procs = make()
    stats = model.stats
    h = model.hierarchy("cpu")
    g = h.mkdir(h.root, "g")
    free = h.mkdir(h.root, "free")
    h.write_file(g, "cpu.cfs_quota_us", b"50000")  # half a CPU per 100 ms period
    procs.spawn(1)
    procs.spawn(2)
    run(stats, 1, runtime=0)
    run(stats, 2, runtime=0)
    attach(h, g, 1)
    attach(h, free, 2)
    stats.now += 1000 * MS  # one busy CPU for 10 periods
    run(stats, 1, runtime=1000 * MS)
    run(stats, 2, runtime=1000 * MS)
    assert stat(h, g, "cpu.stat") == {"nr_periods": 10, "nr_throttled": 10, "throttled_time": 500 * MS,
                                      "nr_bursts": 0, "burst_time": 0}
    # No quota: the bandwidth timer never runs.
    assert stat(h, free, "cpu.stat")["nr_periods"] == 0
    # A light load inside the quota: periods counted, nothing throttled.
    stats.now += 1000 * MS
    run(stats, 1, runtime=1100 * MS)
    s = stat(h, g, "cpu.stat")
    assert (s["nr_periods"], s["nr_throttled"], s["throttled_time"]) == (12, 10, 500 * MS)


def test_cpu_stat_waits_for_a_whole_period():
    model, procs = make()
    stats = model.stats
    h = model.hierarchy("cpu")
    g = h.mkdir(h.root, "g")
    h.write_file(g, "cpu.cfs_quota_us", b"200000")
    procs.spawn(1)
    run(stats, 1, runtime=0)
    attach(h, g, 1)
    stats.now += 40 * MS
    run(stats, 1, runtime=40 * MS)
    assert stat(h, g, "cpu.stat")["nr_periods"] == 0
    stats.now += 70 * MS
    run(stats, 1, runtime=110 * MS)
    assert stat(h, g, "cpu.stat")["nr_periods"] == 1


# -- memory -------------------------------------------------------------------------
def test_memory_usage_and_stat_follow_member_processes():
    model, procs = make()
    stats = model.stats
    h = model.hierarchy("memory")
    a = h.mkdir(h.root, "a")
    b = h.mkdir(a, "b")
    procs.processes[10] = [10, 11]  # two threads of one process
    procs.spawn(20)
    run(stats, 10)
    run(stats, 11, tgid=10)
    run(stats, 20)
    stats.process_figures[10] = ProcessMemory(anon=100 * PAGE, file=20 * PAGE, shmem=5 * PAGE, minflt=7)
    stats.process_figures[20] = ProcessMemory(anon=50 * PAGE, swap=3 * PAGE, minflt=1, majflt=1)
    attach(h, a, 10)
    attach(h, b, 20)
    assert num(h, b, "memory.usage_in_bytes") == 50 * PAGE
    assert num(h, a, "memory.usage_in_bytes") == 175 * PAGE  # its process once (not per thread) + b's
    assert num(h, a, "memory.memsw.usage_in_bytes") == 178 * PAGE
    s = stat(h, a)
    assert (s["rss"], s["cache"], s["shmem"], s["mapped_file"]) == (100 * PAGE, 25 * PAGE, 5 * PAGE, 25 * PAGE)
    assert (s["total_rss"], s["total_swap"], s["swap"]) == (150 * PAGE, 3 * PAGE, 0)
    assert s["active_anon"] == 105 * PAGE and s["total_active_file"] == 20 * PAGE
    numa = r(h, a, "memory.numa_stat").splitlines()
    assert numa[0].startswith(f"total={125} ")


def test_memory_gauges_drop_on_exit_but_peaks_and_events_stay():
    model, procs = make()
    stats = model.stats
    h = model.hierarchy("memory")
    a = h.mkdir(h.root, "a")
    procs.spawn(10)
    run(stats, 10)
    stats.process_figures[10] = ProcessMemory(anon=10 * PAGE, minflt=100, majflt=2)
    attach(h, a, 10)
    assert stat(h, a)["pgfault"] == 0  # first sighting: measured only
    stats.process_figures[10] = ProcessMemory(anon=300 * PAGE, minflt=400, majflt=5)
    assert num(h, a, "memory.usage_in_bytes") == 300 * PAGE
    s = stat(h, a)
    assert (s["pgfault"], s["pgmajfault"]) == (303, 3)
    del stats.process_figures[10], stats.thread_figures[10]
    procs.exit(10)
    assert num(h, a, "memory.usage_in_bytes") == 0
    assert num(h, a, "memory.max_usage_in_bytes") == 300 * PAGE
    s = stat(h, a)
    assert (s["pgfault"], s["pgmajfault"], s["rss"]) == (303, 3, 0)
    h.write_file(a, "memory.max_usage_in_bytes", b"0")
    assert num(h, a, "memory.max_usage_in_bytes") == 0


def test_limit_below_live_usage_is_ebusy():
    model, procs = make()
    stats = model.stats
    h = model.hierarchy("memory")
    a = h.mkdir(h.root, "a")
    procs.spawn(10)
    run(stats, 10)
    stats.process_figures[10] = ProcessMemory(anon=100 * PAGE)
    attach(h, a, 10)
    r(h, a, "memory.usage_in_bytes")
    with pytest.raises(KernelError) as exc:
        h.write_file(a, "memory.limit_in_bytes", str(50 * PAGE).encode())
    assert exc.value.errno == errno.EBUSY
    h.write_file(a, "memory.limit_in_bytes", str(100 * PAGE).encode())


def test_root_memory_is_the_machine():
    model, procs = make()
    stats = model.stats
    h = model.hierarchy("memory")
    a = h.mkdir(h.root, "a")
    procs.spawn(10)
    run(stats, 10)
    stats.process_figures[10] = ProcessMemory(anon=100 * PAGE, file=10 * PAGE)
    stats.memory = {"usage": 1000 * PAGE, "cache": 600 * PAGE, "rss": 400 * PAGE, "swap": 0,
                    "active_file": 500 * PAGE, "pgfault": 9000}
    attach(h, a, 10)
    assert num(h, h.root, "memory.usage_in_bytes") == 1000 * PAGE
    s = stat(h, h.root)
    assert (s["total_rss"], s["total_cache"], s["total_active_file"]) == (400 * PAGE, 600 * PAGE, 500 * PAGE)
    assert (s["rss"], s["cache"]) == (300 * PAGE, 590 * PAGE)  # the machine less what a holds
    assert s["total_pgfault"] == 9000


def test_without_a_source_or_with_the_null_one_stored_figures_stand():
    for stats in (None, NullStats()):
        procs = StaticProcessTable()
        model = CgroupModel(host=HOST, processes=procs, hierarchies=["cpuacct", "memory"])
        if stats is not None:
            model.stats = stats
        h = model.hierarchy("cpuacct")
        a = h.mkdir(h.root, "a")
        procs.spawn(5)
        attach(h, a, 5)
        h.controller("cpuacct").charge(a, 0, user_ns=5, system_ns=1)
        assert num(h, a, "cpuacct.usage") == 6
        m = model.hierarchy("memory")
        ma = m.mkdir(m.root, "a")
        from fakefs.model.controllers.memory import charge

        charge(ma, "memory", 3)
        assert num(m, ma, "memory.usage_in_bytes") == 3 * PAGE
        assert num(m, m.root, "memory.usage_in_bytes") == 3 * PAGE


def test_a_burst_of_reads_is_one_scan_per_window(tmp_path):
    proc = tmp_path / "proc"
    _fake_proc_task(proc, 42, tgid=42, utime=150, stime=50, cpu=1, runtime=2_000_000_000)
    _fake_proc_task(proc, 43, tgid=42, utime=1, stime=0, cpu=0, runtime=10_000_000)
    (proc / "42" / "status").write_text(
        "Name:\tx\nTgid:\t42\nRssAnon:\t    2048 kB\nRssFile:\t  1024 kB\nRssShmem:\t 0 kB\nVmSwap:\t 4 kB\n")
    (proc / "stat").write_text("cpu  10 2 30 400 0 4 5 0\ncpu0 4 1 10 200 0 2 1\ncpu1 6 1 20 200 0 2 4\n")
    (proc / "meminfo").write_text("MemTotal: 1000 kB\nBuffers: 10 kB\nCached: 100 kB\nSwapCached: 0 kB\n"
                                  "AnonPages: 50 kB\nShmem: 5 kB\nSwapTotal: 0 kB\nSwapFree: 0 kB\n")
    (proc / "vmstat").write_text("pgfault 77\npgmajfault 3\n")
    live = LiveStats(window_s=60, proc=str(proc))
    tick = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
    t = live.threads([42, 43, 44])
    assert set(t) == {42, 43}
    assert t[42] == ThreadCpu(42, 2_000_000_000, 150 * tick, 50 * tick, 1, 7 * tick)
    assert t[43].tgid == 42
    p = live.processes([42])[42]
    assert (p.anon, p.file, p.swap, p.minflt, p.majflt) == (2 << 20, 1 << 20, 4096, 11, 12)
    cpu = live.machine_cpu()
    assert cpu.user_ns == (5 * tick, 7 * tick) and cpu.system_ns == (13 * tick, 26 * tick)
    mem = live.machine_memory()
    assert (mem["usage"], mem["cache"], mem["rss"], mem["pgfault"]) == (160 << 10, 110 << 10, 50 << 10, 77)
    scans = live.scans
    for _ in range(20):  # within the window: served from the cache
        live.threads([42, 43])
        live.processes([42])
        live.machine_cpu()
        live.machine_memory()
    assert live.scans == scans
    live.window_ns = 0
    live.threads([42])
    assert live.scans == scans + 1


def _fake_proc_task(proc, tid, tgid, utime, stime, cpu, runtime):
    d = proc / str(tid)
    d.mkdir(parents=True)
    # fields 3.. of /proc/PID/stat; minflt (10) = 11, majflt (12) = 12
    rest = ["S", "1", "1", "1", "0", "-1", "0", "11", "0", "12", "0", str(utime), str(stime)]
    rest += ["0"] * (22 - 3 - len(rest)) + ["7"]  # starttime (22), in ticks
    rest += ["0"] * (39 - 3 - len(rest)) + [str(cpu), "0"]
    (d / "stat").write_text(f"{tid} (a (b) c) " + " ".join(rest) + "\n")
    (d / "schedstat").write_text(f"{runtime} 0 1\n")
    (d / "status").write_text(f"Name:\tx\nTgid:\t{tgid}\n")


def test_pids_current_counts_live_member_threads_hierarchically():
    model, procs = make()
    stats = model.stats
    h = model.hierarchy("pids")
    a = h.mkdir(h.root, "a")
    b = h.mkdir(a, "b")
    procs.processes[10] = [10, 11, 12]
    for tid in (10, 11, 12):
        run(stats, tid, tgid=10)
    procs.spawn(20)
    run(stats, 20)
    attach(h, b, 10)
    attach(h, a, 20)
    assert num(h, b, "pids.current") == 3
    assert num(h, a, "pids.current") == 4
    del stats.thread_figures[11]  # a thread ended
    assert num(h, a, "pids.current") == 3
    assert num(h, a, "pids.peak") == 4

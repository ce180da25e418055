"""Live statistics over a real FUSE mount: real processes attached to fake
cgroups show up in memory, cpuacct, cpu and pids files; the roots show the
machine, compared with this machine's real root cgroups."""

from __future__ import annotations

import os
import time

import pytest

from tests.support import Child, require

MB = 1 << 20


@pytest.fixture
def child():
    c = Child()
    yield c
    c.stop()


def num(m, *parts) -> int:
    return int(m.read(*parts))


def stat(m, *parts) -> dict[str, int]:
    return {k: int(v) for k, v in (line.split() for line in m.read(*parts).splitlines())}


def test_allocation_busy_loop_and_exit(mount_fakefs, child):
    m = mount_fakefs()
    for h in ("memory", "cpu,cpuacct", "pids"):
        os.makedirs(m.p(h, "app", "worker"))
        m.write(f"{h}/app/worker/cgroup.procs", str(child.pid))
    base = num(m, "memory", "app", "worker", "memory.usage_in_bytes")
    assert base < 100 * MB

    # 200 MB shows up within a second, in the group and its parent.
    child.say("alloc 200")
    child.expect("allocated")
    t0 = time.monotonic()
    while num(m, "memory", "app", "worker", "memory.usage_in_bytes") < base + 200 * MB:
        assert time.monotonic() - t0 < 1.0, "200 MB not seen within a second"
        time.sleep(0.05)
    assert num(m, "memory", "app", "memory.usage_in_bytes") >= 200 * MB
    s = stat(m, "memory", "app", "memory.stat")
    assert s["rss"] == 0 and s["total_rss"] >= 200 * MB  # local vs hierarchical
    assert stat(m, "memory", "app", "worker", "memory.stat")["rss"] >= 200 * MB

    # A busy loop raises cpuacct.usage by its CPU time (measured by the kernel).
    usage0 = num(m, "cpu,cpuacct", "app", "worker", "cpuacct.usage")
    run0 = child.runtime_ns()
    child.say("spin 0.8")
    child.expect("spun")
    ran = child.runtime_ns() - run0
    time.sleep(0.25)  # past the cache window
    grew = num(m, "cpu,cpuacct", "app", "worker", "cpuacct.usage") - usage0
    assert ran > 700_000_000
    assert abs(grew - ran) < 0.1 * ran, (grew, ran)
    assert num(m, "cpu,cpuacct", "app", "cpuacct.usage") >= grew
    ticks = stat(m, "cpu,cpuacct", "app", "worker", "cpuacct.stat")
    # cpuacct.stat splits the runtime in the proportion of the kernel's own
    # user/system tick counts (cputime_adjust), so compare with the child's
    # /proc/PID/stat rather than a fixed number: under load the 200 MB of
    # page faults can make system time a large share.
    fields = open(f"/proc/{child.pid}/stat").read().rsplit(")", 1)[1].split()
    utime, stime = int(fields[11]), int(fields[12])
    total = ticks["user"] + ticks["system"]
    hz_ns = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
    assert abs(total - num(m, "cpu,cpuacct", "app", "worker", "cpuacct.usage") // hz_ns) <= 2
    expected_user = total * utime / max(1, utime + stime)
    assert abs(ticks["user"] - expected_user) <= max(5, 0.15 * expected_user), (ticks, utime, stime)
    assert ticks["user"] >= 40  # the 0.8 s spin is user time
    assert sum(int(v) for v in m.read("cpu,cpuacct", "app", "worker", "cpuacct.usage_percpu").split()) == \
        num(m, "cpu,cpuacct", "app", "worker", "cpuacct.usage")

    # Threads count in pids.current, hierarchically.
    child.say("threads 3")
    child.expect("threads")
    m.write("pids/app/worker/cgroup.procs", str(child.pid))  # the new threads join too
    assert num(m, "pids", "app", "worker", "pids.current") == 4
    assert num(m, "pids", "app", "pids.current") == 4

    # Exit: usage drops, the peak and the CPU counters stay.
    before = {name: num(m, "cpu,cpuacct", "app", name) for name in ("cpuacct.usage", "cpuacct.usage_user")}
    child.say("exit")
    child.p.wait(timeout=10)
    time.sleep(0.25)
    assert num(m, "memory", "app", "worker", "memory.usage_in_bytes") < 50 * MB
    assert num(m, "memory", "app", "worker", "memory.max_usage_in_bytes") >= 200 * MB
    for name, value in before.items():
        assert num(m, "cpu,cpuacct", "app", name) >= value
    assert num(m, "pids", "app", "pids.current") == 0
    for h in ("memory", "cpu,cpuacct", "pids"):
        os.rmdir(m.p(h, "app", "worker"))
        os.rmdir(m.p(h, "app"))


def test_cpu_stat_counts_periods_of_a_quota(mount_fakefs, child):
    m = mount_fakefs()
    os.mkdir(m.p("cpu,cpuacct", "q"))
    m.write("cpu,cpuacct/q/cpu.cfs_quota_us", "10000")  # a tenth of a CPU
    m.write("cpu,cpuacct/q/cgroup.procs", str(child.pid))
    assert stat(m, "cpu,cpuacct", "q", "cpu.stat")["nr_periods"] == 0
    child.say("spin 0.6")
    child.expect("spun")
    time.sleep(0.2)
    s = stat(m, "cpu,cpuacct", "q", "cpu.stat")
    # 0.6 s of CPU against 10 ms per 100 ms period: it ran in every period
    # that passed (at least 6) and went over its quota in them.
    assert s["nr_periods"] >= 5
    assert s["nr_throttled"] >= 1 and s["throttled_time"] > 100_000_000
    assert s["nr_throttled"] <= s["nr_periods"]
    child.stop()
    os.rmdir(m.p("cpu,cpuacct", "q"))


def _real(path: str) -> str:
    with open(path) as f:
        return f.read()


def _ticks(text: str) -> dict[str, int]:
    """cpuacct.stat's lines."""
    return {k: int(v) for k, v in (line.split() for line in text.splitlines())}


def idle_seconds() -> float:
    """The CPUs' idle and iowait time since boot, from /proc/stat."""
    with open("/proc/stat") as f:
        fields = f.readline().split()
    return (int(fields[4]) + int(fields[5])) / os.sysconf("SC_CLK_TCK")


# How far the fake root's cpuacct.usage (each CPU's time neither idle,
# iowait nor stolen) may be from the real one (every task's runtime),
# measured on this machine (Linux 6.18, 2 CPUs, HZ 250, NO_HZ_IDLE, no
# IRQ_TIME_ACCOUNTING, PARAVIRT_TIME_ACCOUNTING; see fakefs/host/stats.py):
# both sampled every 2 to 5 s for 70 minutes from 8 minutes after boot,
# through other engineers' test suites (mostly saturating both CPUs) and
# this project's FUSE, gVisor, probe and stats tests, and this test run 15
# times in a row.
# - Above, by what the CPUs did out of tasks yet not idle: early boot before
#   the idle accounting starts, then interrupts and the way into and out of
#   idle, while idle. 2.8 s at 8 minutes of uptime (420 s idle), between
#   +2.1 and +3.1 s in all 1,634 samples after; in 30 s windows with at
#   least 5 s idle, 0.4 to 4.4% of the idle time (the most with FUSE and
#   gVisor tests: thousands of short sleeps a second), 3.8% at most over
#   60 s.
# - Below, by steal time while idle (subtracted, though the runtime never
#   had it) and the clocks' rates (sched_clock against CLOCK_MONOTONIC):
#   under 0.01% of the usage.
# The tick samples (user + system, what fakefs showed before) were 0.2 to
# 1% below the real growth in those windows, 0.1% over the 70 minutes, and
# 3.8% on the CI run of issue 17: outside the bound below.
ROOT_USAGE_BOOT_S = 5.0
ROOT_USAGE_PER_IDLE = 0.06
ROOT_USAGE_BELOW = 0.001


def root_usage_bounds(usage_ns: int, idle_s: float) -> tuple[int, int]:
    """(below, above) in nanoseconds."""
    return (int(ROOT_USAGE_BELOW * usage_ns) + 1_000_000_000,
            int((ROOT_USAGE_BOOT_S + ROOT_USAGE_PER_IDLE * idle_s) * 1e9))


def test_roots_show_the_machine_like_the_real_roots(mount_fakefs):
    require(os.path.exists("/sys/fs/cgroup/memory/memory.usage_in_bytes")
            and os.path.exists("/sys/fs/cgroup/cpuacct/cpuacct.stat"), "needs this host's real cgroup v1 roots")
    m = mount_fakefs()
    real_mem = int(_real("/sys/fs/cgroup/memory/memory.usage_in_bytes"))
    fake_mem = num(m, "memory", "memory.usage_in_bytes")
    assert abs(fake_mem - real_mem) < 0.05 * real_mem + 64 * MB, (fake_mem, real_mem)
    real_lines = _real("/sys/fs/cgroup/memory/memory.stat").splitlines()
    real_stat = {k: int(v) for k, v in (line.split() for line in real_lines)}
    fake_stat = stat(m, "memory", "memory.stat")
    for key in ("total_rss", "total_cache"):
        assert abs(fake_stat[key] - real_stat[key]) < 0.1 * real_stat[key] + 32 * MB, key
    # CPU: the real root, then (past the fake's cache window, so that its
    # figures are read after) the fake one, then the real root again: the
    # fake's moment lies between the two real readings.
    files = ("cpuacct.usage", "cpuacct.usage_user", "cpuacct.usage_sys")
    before = {name: int(_real(f"/sys/fs/cgroup/cpuacct/{name}")) for name in files}
    before["stat"] = _ticks(_real("/sys/fs/cgroup/cpuacct/cpuacct.stat"))
    time.sleep(0.2)
    fake = {name: num(m, "cpu,cpuacct", name) for name in files}
    fake["stat"] = _ticks(m.read("cpu,cpuacct", "cpuacct.stat"))
    after = {name: int(_real(f"/sys/fs/cgroup/cpuacct/{name}")) for name in files}
    after["stat"] = _ticks(_real("/sys/fs/cgroup/cpuacct/cpuacct.stat"))
    ncpu, tick = os.cpu_count(), 1_000_000_000 // os.sysconf("SC_CLK_TCK")
    # usage_user and usage_sys are kernel_cpustat, which /proc/stat shows in
    # ticks: the same figure, cut to a tick per field (user + nice, system +
    # irq + softirq) and CPU.
    for name, fields in (("cpuacct.usage_user", 2), ("cpuacct.usage_sys", 3)):
        assert before[name] - fields * ncpu * tick <= fake[name] <= after[name], (name, before, fake, after)
    # usage: every task's scheduler runtime, which /proc does not show on
    # this kernel; the fake shows the CPUs' time neither idle, iowait nor
    # stolen, within the bounds measured here (see ROOT_USAGE_*).
    idle = idle_seconds()
    low, high = root_usage_bounds(before["cpuacct.usage"], idle)
    assert before["cpuacct.usage"] - low <= fake["cpuacct.usage"] <= after["cpuacct.usage"] + high, \
        (before["cpuacct.usage"], fake["cpuacct.usage"], after["cpuacct.usage"], idle)
    # cpuacct.stat: kernel_cpustat's split of that usage (cputime_adjust),
    # in ticks: within the same bounds, and a tick per CPU of rounding.
    for key in ("user", "system"):
        share = max(before["stat"][key], 1) / max(sum(before["stat"].values()), 1)
        slack = ncpu + (low + high) * share / tick
        assert before["stat"][key] - slack <= fake["stat"][key] <= after["stat"][key] + slack, \
            (key, before["stat"], fake["stat"], after["stat"])
    # Counters of the root never go backwards.
    again = num(m, "cpu,cpuacct", "cpuacct.usage")
    time.sleep(0.2)
    assert num(m, "cpu,cpuacct", "cpuacct.usage") >= again


def test_a_burst_of_reads_is_cheap(mount_fakefs, child):
    """The cost of live files, for the record: a burst of reads hits the
    cache (150 ms window), so it costs about what static files cost."""
    m = mount_fakefs()
    os.mkdir(m.p("memory", "b"))
    m.write("memory/b/cgroup.procs", str(child.pid))

    def burst(name: str, n: int = 200) -> float:
        t0 = time.perf_counter()
        for _ in range(n):
            m.read("memory", "b", name)
        return (time.perf_counter() - t0) / n

    live = burst("memory.stat")
    static = burst("memory.swappiness")
    print(f"\nper read: memory.stat {live * 1e6:.0f} us, memory.swappiness {static * 1e6:.0f} us")
    assert live < 5 * static + 0.002
    child.stop()
    os.rmdir(m.p("memory", "b"))

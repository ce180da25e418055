"""Live statistics over a real FUSE mount: real processes attached to fake
cgroups show up in memory, cpuacct, cpu and pids files; the roots show the
machine, compared with this machine's real root cgroups."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from tests.support import require

MB = 1 << 20
CHILD = r"""
import sys, threading, time
held = []
for line in sys.stdin:
    cmd, _, arg = line.strip().partition(" ")
    if cmd == "alloc":
        held.append(b"\1" * (int(arg) << 20))  # resident: every page written
        print("allocated", flush=True)
    elif cmd == "spin":
        # CPU time, however loaded the machine is; the clock is read
        # rarely, so the time is user time.
        end = time.process_time() + float(arg)
        while time.process_time() < end:
            for _ in range(20000):
                pass
        print("spun", flush=True)
    elif cmd == "threads":
        evt = threading.Event()
        for _ in range(int(arg)):
            threading.Thread(target=evt.wait, daemon=True).start()
        print("threads", flush=True)
    elif cmd == "exit":
        break
"""


class Child:
    def __init__(self):
        self.p = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  text=True)
        self.pid = self.p.pid

    def say(self, *lines: str) -> None:
        self.p.stdin.write("".join(line + "\n" for line in lines))
        self.p.stdin.flush()

    def expect(self, word: str) -> str:
        line = self.p.stdout.readline()
        assert line.startswith(word), line
        return line

    def runtime_ns(self) -> int:
        with open(f"/proc/{self.pid}/schedstat") as f:
            return int(f.read().split()[0])

    def stop(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait()


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
    real_cpu = dict(line.split() for line in _real("/sys/fs/cgroup/cpuacct/cpuacct.stat").splitlines())
    fake_cpu = dict(line.split() for line in m.read("cpu,cpuacct", "cpuacct.stat").splitlines())
    drift = 2_000_000_000 * os.cpu_count()  # the two are read a moment apart
    for name in ("cpuacct.usage_user", "cpuacct.usage_sys"):  # both are kernel_cpustat
        real = int(_real(f"/sys/fs/cgroup/cpuacct/{name}"))
        assert abs(num(m, "cpu,cpuacct", name) - real) <= drift, name
    # The root's runtime is not in /proc: fakefs shows user + system, which
    # this machine's root runs about 1% above (tick sampling misses some).
    real_usage = int(_real("/sys/fs/cgroup/cpuacct/cpuacct.usage"))
    fake_usage = num(m, "cpu,cpuacct", "cpuacct.usage")
    assert abs(fake_usage - real_usage) < 0.03 * real_usage + drift, (fake_usage, real_usage)
    hz = os.sysconf("SC_CLK_TCK")
    for key in ("user", "system"):
        assert abs(int(fake_cpu[key]) - int(real_cpu[key])) <= 0.03 * int(real_cpu[key]) + drift * hz // 10**9, key
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

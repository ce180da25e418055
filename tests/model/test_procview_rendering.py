"""The pure rendering rules of the /proc views (fakefs.model.procviews),
checked against this machine's own files: a view with no limit is the file
itself, the kernel's line formats are reproduced byte for byte, and the
limited views follow lxcfs's arithmetic."""

from __future__ import annotations

import re

import pytest

from fakefs.model import procviews as pv

MiB = 1 << 20
UNLIMITED = 9223372036854771712
# gVisor's /proc/meminfo (runsc release-20221219, measured): fewer lines, its own names.
GVISOR_MEMINFO = (
    "MemTotal:       24683656 kB\nMemFree:        24667724 kB\nMemAvailable:   24667724 kB\n"
    "Buffers:               0 kB\nCached:             8176 kB\nSwapCache:             0 kB\n"
    "Active:            11832 kB\nInactive:           4088 kB\nActive(anon):       7744 kB\n"
    "Inactive(anon):        0 kB\nActive(file):       4088 kB\nInactive(file):     4088 kB\n"
    "Unevictable:           0 kB\nMlocked:               0 kB\nSwapTotal:             0 kB\n"
    "SwapFree:              0 kB\nDirty:                 0 kB\nWriteback:             0 kB\n"
    "AnonPages:          7744 kB\nMapped:             8176 kB\nShmem:                 0 kB\n")


def read(path: str) -> str:
    with open(path) as f:
        return f.read()


def limited(limit=512 * MiB, usage=100 * MiB, memsw_limit=UNLIMITED, memsw_usage=None, swappiness=60, **stat):
    totals = {f"total_{k}": v for k, v in stat.items()}
    return pv.MemoryFigures(limit=limit, usage=usage, stat=totals, memsw_limit=memsw_limit,
                            memsw_usage=usage if memsw_usage is None else memsw_usage, swappiness=swappiness)


@pytest.mark.parametrize("host", [read("/proc/meminfo"), GVISOR_MEMINFO], ids=["this-kernel", "gvisor"])
def test_kb_lines_are_rendered_as_the_kernel_prints_them(host):
    again = "".join(pv.meminfo_line(line.partition(":")[0], int(line.split()[1]))
                    if line.rstrip().endswith(" kB") else line for line in host.splitlines(keepends=True))
    assert again == host


@pytest.mark.parametrize("host", [read("/proc/meminfo"), GVISOR_MEMINFO], ids=["this-kernel", "gvisor"])
def test_meminfo_without_a_limit_is_the_machine_file(host):
    assert pv.render_meminfo(host, None) == host
    assert pv.render_meminfo(host, limited(limit=UNLIMITED)) == host
    # a limit above the machine's memory is no limit either
    total = pv.meminfo_kb(host)["MemTotal"] * 1024
    assert pv.render_meminfo(host, limited(limit=total + 4096, memsw_limit=UNLIMITED)) == host


@pytest.mark.parametrize("host", [read("/proc/meminfo"), GVISOR_MEMINFO], ids=["this-kernel", "gvisor"])
def test_meminfo_under_a_limit_keeps_every_line_in_order(host):
    out = pv.render_meminfo(host, limited(cache=10 * MiB, active_anon=50 * MiB, inactive_file=4 * MiB,
                                          active_file=6 * MiB, shmem=1 * MiB, mapped_file=2 * MiB, dirty=1 * MiB))
    labels = lambda text: [line.partition(":")[0] for line in text.splitlines()]  # noqa: E731
    assert labels(out) == labels(host)
    assert len(out) == len(host)  # fixed-width values: same length as long as they fit 8 digits
    kb = pv.meminfo_kb(out)
    assert kb["MemTotal"] == 524288
    assert kb["MemFree"] == 524288 - 102400
    assert kb["MemAvailable"] == kb["MemFree"] + kb["Cached"] == 524288 - 102400 + 10240
    assert kb["Cached"] == 10240 and kb["Buffers"] == 0
    assert kb["Active"] == 50 * 1024 + 6 * 1024 and kb["Inactive"] == 4 * 1024
    assert kb["AnonPages"] == 49 * 1024 and kb["Shmem"] == 1024 and kb["Mapped"] == 2048 and kb["Dirty"] == 1024
    assert kb["SwapTotal"] == kb["SwapFree"] == 0  # the machine has no swap to give
    # lines lxcfs does not touch are the machine's
    untouched = [line for line in host.splitlines() if line.partition(":")[0] in ("Mlocked", "Zswap", "CommitLimit")]
    assert all(line in out.splitlines() for line in untouched)


def test_memtotal_is_capped_by_the_machine_and_free_never_negative():
    host = read("/proc/meminfo")
    total = pv.meminfo_kb(host)["MemTotal"]
    # memsw below the machine's memory+swap: limited, but the memory limit is above the machine's
    out = pv.meminfo_kb(pv.render_meminfo(host, limited(limit=UNLIMITED, memsw_limit=256 * MiB, usage=10 * MiB)))
    assert out["MemTotal"] == total
    # fakefs does not enforce limits: usage can exceed them
    out = pv.meminfo_kb(pv.render_meminfo(host, limited(limit=64 * MiB, usage=100 * MiB)))
    assert out["MemTotal"] == 65536 and out["MemFree"] == 0 and out["MemAvailable"] == 0


def test_swap_follows_memsw_up_to_the_machine_swap():
    host = read("/proc/meminfo").replace("SwapTotal:             0 kB", "SwapTotal:       2097152 kB")
    if "SwapTotal:       2097152 kB" not in host:
        pytest.skip("this machine has swap: the sample line differs")
    mem = limited(limit=512 * MiB, usage=100 * MiB, memsw_limit=768 * MiB, memsw_usage=150 * MiB)
    kb = pv.meminfo_kb(pv.render_meminfo(host, mem))
    # lxcfs: SwapTotal = min(memsw limit, machine swap); used = memsw usage - usage
    assert kb["SwapTotal"] == 768 * 1024 and kb["SwapFree"] == 768 * 1024 - 50 * 1024
    assert pv.meminfo_kb(pv.render_meminfo(host, limited(memsw_limit=UNLIMITED)))["SwapTotal"] == 2097152
    # swappiness 0: the cgroup cannot swap
    mem0 = limited(limit=512 * MiB, usage=100 * MiB, memsw_limit=768 * MiB, memsw_usage=100 * MiB, swappiness=0)
    kb0 = pv.meminfo_kb(pv.render_meminfo(host, mem0))
    assert kb0["SwapTotal"] == 0 and kb0["SwapFree"] == 0
    swaps = pv.render_swaps(pv.SWAPS_HEADER, host, mem)
    header, line = swaps.splitlines()
    assert header + "\n" == pv.SWAPS_HEADER
    assert pv.SWAPS_HEADER == "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"  # measured
    assert line.split() == ["none", "virtual", str(768 * 1024), str(50 * 1024), "0"]


def test_swaps_line_has_the_kernel_columns():
    # swap_show(): the name padded to 40 columns, "\t" before small numbers
    assert pv.swaps_line("/dev/vdb", "partition", 2097148, 0, -2) == \
        "/dev/vdb" + " " * 32 + "partition\t2097148\t\t0\t\t-2\n"
    assert pv.swaps_line("/swapfile", "file\t", 10485756, 12345678, -2) == \
        "/swapfile" + " " * 31 + "file\t\t10485756\t12345678\t-2\n"


def test_swaps_without_a_limit_is_the_machine_file():
    host = read("/proc/swaps")
    assert pv.render_swaps(host, read("/proc/meminfo"), None) == host


ONLINE = frozenset({0, 1, 2, 3})


@pytest.mark.parametrize("cpuset, quota, visible", [
    ({0, 1, 2, 3}, None, [0, 1, 2, 3]),
    ({0, 1, 2, 3}, (100000, 100000), [0]),
    ({0, 1, 2, 3}, (150000, 100000), [0, 1]),  # ceil(1.5)
    ({0, 1, 2, 3}, (50000, 100000), [0]),
    ({1, 3}, None, [1, 3]),
    ({1, 3}, (100000, 100000), [1]),
    ({0, 1, 2, 3}, (900000, 100000), [0, 1, 2, 3]),  # more than the machine has
])
def test_visible_cpus_are_the_cpuset_cut_to_the_quota(cpuset, quota, visible):
    assert pv.CpuFigures(frozenset(cpuset), quota).visible(ONLINE) == visible


def test_the_quota_allowing_fewest_cpus_on_the_path_binds():
    assert pv.binding_quota([(-1, 100000), (250000, 100000), (150000, 50000)]) == (250000, 100000)
    assert pv.binding_quota([(-1, 100000)]) is None
    assert pv.binding_quota([(150000, 100000), (200000, 100000)]) == (150000, 100000)


def test_cpu_online_is_renumbered_from_zero():
    assert pv.render_cpu_online("0-3\n", None, ONLINE) == "0-3\n"
    assert pv.render_cpu_online("0-3\n", pv.CpuFigures(ONLINE), ONLINE) == "0-3\n"
    assert pv.render_cpu_online("0-3\n", pv.CpuFigures(ONLINE, (100000, 100000)), ONLINE) == "0\n"
    assert pv.render_cpu_online("0-3\n", pv.CpuFigures(frozenset({1, 2, 3})), ONLINE) == "0-2\n"


def test_cpuinfo_keeps_the_blocks_of_the_visible_cpus_renumbered():
    host = read("/proc/cpuinfo")
    online = frozenset(int(n) for n in re.findall(r"^processor\s*:\s*(\d+)", host, re.M))
    assert pv.render_cpuinfo(host, pv.CpuFigures(online), online) == host
    blocks = host.split("\n\n")
    last = max(online)
    out = pv.render_cpuinfo(host, pv.CpuFigures(frozenset({last}), (100000, 100000)), online)
    # the block of the last CPU, numbered 0
    expected = re.sub(r"^processor\s*:\s*\d+", "processor\t: 0", blocks[sorted(online).index(last)], flags=re.M)
    assert out.split("\n\n")[0] == expected
    assert len(re.findall(r"^processor", out, re.M)) == 1


def stat_text(per: dict[int, list[int]], rest: str = "intr 1 2\nctxt 5\nbtime 1700000000\n") -> str:
    total = [sum(v[i] for v in per.values()) for i in range(10)]
    lines = ["cpu  " + " ".join(map(str, total))] + [f"cpu{c} " + " ".join(map(str, v)) for c, v in per.items()]
    return "\n".join(lines) + "\n" + rest


def test_stat_without_a_limit_is_the_machine_file():
    host = read("/proc/stat")
    online = frozenset(int(c) for c in re.findall(r"^cpu(\d+) ", host, re.M))
    assert pv.render_stat(pv.CpuViewHistory(), "k", host, {}, pv.CpuFigures(online), online) == host


def test_stat_cpuview_shows_the_cgroup_time_on_n_cpus_and_only_grows():
    history = pv.CpuViewHistory()
    cpu = pv.CpuFigures(ONLINE, (100000, 100000))
    per = {c: [1000, 0, 500, 10000, 0, 0, 0, 0, 0, 0] for c in range(4)}
    first = history.render("cg", stat_text(per), {c: (10, 5) for c in range(4)}, cpu, ONLINE)
    lines = first.splitlines()
    assert lines[0] == "cpu  0 0 0 0 0 0 0 0 0 0" and lines[1] == "cpu0 0 0 0 0 0 0 0 0 0 0"
    assert lines[2:] == ["intr 1 2", "ctxt 5", "btime 1700000000"]  # the rest passes through
    # 100 ticks pass on every CPU; the cgroup used 30 user + 10 system on CPU 2 (not shown)
    per2 = {c: [v[0] + 20, 0, v[2], v[3] + 80, 0, 0, 0, 0, 0, 0] for c, v in per.items()}
    usage2 = {0: (10, 5), 1: (10, 5), 2: (40, 15), 3: (10, 5)}
    second = history.render("cg", stat_text(per2), usage2, cpu, ONLINE).splitlines()
    user, nice, system, idle = map(int, second[1].split()[1:5])
    # the time used on CPU 2 shows on the one CPU shown, within what passed there
    assert (user, system) == (30, 10) and user + system + idle == 100
    assert second[0].split()[1:5] == second[1].split()[1:5]
    # counters never go backwards, even when the cgroup's usage seems to drop
    third = history.render("cg", stat_text(per2), {c: (0, 0) for c in range(4)}, cpu, ONLINE).splitlines()
    assert third[1] == "cpu0 0 0 0 0 0 0 0 0 0 0"  # a re-created cgroup starts again, as lxcfs does
    fourth = history.render("cg", stat_text({c: [v[0] + 5, 0, v[2], v[3] + 5, 0, 0, 0, 0, 0, 0] for c, v in per2.items()}),
                            {c: (1, 0) for c in range(4)}, cpu, ONLINE).splitlines()
    assert all(int(a) >= int(b) for a, b in zip(fourth[1].split()[1:], third[1].split()[1:]))


def test_stat_fractional_quota_takes_the_missing_fraction_off_idle():
    history = pv.CpuViewHistory()
    cpu = pv.CpuFigures(frozenset({0, 1}), (150000, 100000))  # 1.5 CPUs: 2 shown
    per = {c: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0] for c in (0, 1)}
    history.render("cg", stat_text(per), {0: (0, 0), 1: (0, 0)}, cpu, frozenset({0, 1}))
    per2 = {c: [0, 0, 0, 100, 0, 0, 0, 0, 0, 0] for c in (0, 1)}
    out = history.render("cg", stat_text(per2), {0: (0, 0), 1: (0, 0)}, cpu, frozenset({0, 1})).splitlines()
    # 200 ticks passed on 2 CPUs, all idle; a quarter (0.5 of 2 CPUs) is not the cgroup's to have
    assert int(out[0].split()[4]) == 150


def test_loadavg_format_and_averages():
    assert pv.format_loadavg([0, 0, 0], pv.TaskCount(0, 1, 42)) == "0.00 0.00 0.00 0/1 42\n"
    assert pv.format_loadavg([pv.FIXED_1, 2 * pv.FIXED_1 + pv.FIXED_1 // 2, 0], pv.TaskCount(2, 7, 9)) == \
        "1.00 2.50 0.00 2/7 9\n"
    history = pv.LoadHistory()
    count = pv.TaskCount(1, 3, 99)
    assert history.render("cg", 1000.0, lambda: count) == "0.00 0.00 0.00 1/3 99\n"
    # one runnable task for a minute: the 1-minute average approaches 1 - 1/e
    out = history.render("cg", 1060.0, lambda: count).split()
    assert 0.60 <= float(out[0]) <= 0.66 and float(out[1]) < float(out[0]) and float(out[2]) < float(out[1])
    # a long time at one task: every average is 1
    assert history.render("cg", 1000.0 + 7200, lambda: count).startswith("1.00 1.00 1.00 ")


def test_uptime_format():
    assert pv.render_uptime(12.345, 2.0) == "12.35 10.35\n"
    assert pv.render_uptime(5.0, 9.0) == "5.00 5.00\n"


def test_diskstats_from_blkio_keeps_the_kernel_columns():
    host = read("/proc/diskstats")
    lines = host.splitlines()
    major, minor, name = lines[-1].split()[:3]
    serviced = f"{major}:{minor} Read 10\n{major}:{minor} Write 20\n{major}:{minor} Discard 3\nTotal 33\n"
    service_bytes = f"{major}:{minor} Read 4096\n{major}:{minor} Write 1048576\n{major}:{minor} Discard 512\nTotal 1\n"
    out = pv.render_diskstats(host, serviced, service_bytes)
    [line] = out.splitlines()
    # "%4d %7d %s" then the same number of fields as the machine's lines
    assert line.startswith(f"{int(major):4d} {int(minor):7d} {name} ")
    assert line[:len(line.split(name)[0])] == lines[-1][:len(lines[-1].split(name)[0])]
    fields = list(map(int, line.split()[3:]))
    assert len(fields) == len(lines[-1].split()) - 3
    assert fields[:8] == [10, 0, 8, 0, 20, 0, 2048, 0]
    if len(fields) >= 14:
        assert fields[11:14] == [3, 0, 1]
    # no I/O in the cgroup: no lines (lxcfs)
    assert pv.render_diskstats(host, "Total 0\n", "Total 0\n") == ""


def test_proc_cgroup_parsing():
    text = "12:cpu,cpuacct:/a\n3:name=systemd:/s\n0::/v2\n"
    assert pv.parse_proc_cgroup(text) == {"cpu": "/a", "cpuacct": "/a", "name=systemd": "/s"}
    assert pv.hierarchies_of(text) == ["cpu,cpuacct", "name=systemd"]

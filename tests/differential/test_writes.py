"""Writes: every writable control file of a fresh child gets the same table
of inputs on the kernel and on the candidate; the write's outcome (bytes
written or errno) and what reads back afterwards must be the same.

Each input goes to its own fresh cgroup ``w`` under the base, so one
divergence cannot cascade into the next input's result.
"""

from __future__ import annotations

import os

import pytest

from fakefs.model.kparse import format_cpulist

from .surfaces import CONTROLLERS, compare, hier_dir, machine_host_facts, short
from .test_inventory import INVENTORY, VENDOR_EXTRAS

pytestmark = pytest.mark.kernel

HOST = machine_host_facts()
ALL_CPUS = format_cpulist(HOST.online_cpus)
ALL_MEMS = format_cpulist(HOST.online_mems)


def _a_disk() -> str:
    """MAJ:MIN of a real block device, for the blkio per-device files."""
    try:
        for name in sorted(os.listdir("/sys/block")):
            if not name.startswith(("loop", "ram", "zram")):
                with open(f"/sys/block/{name}/dev") as f:
                    return f.read().strip()
    except OSError:
        pass
    return "8:0"


DISK = _a_disk()

# ---------------------------------------------------------------------------
# Input tables
# ---------------------------------------------------------------------------

# Every writable file also gets these: malformed, boundary and size cases.
GENERIC = [
    "",                      # zero-length write(2): returns 0, the handler never runs
    "\n", " ", "junk", "12junk", "1 2", "1.5", "0x", "-", "+",
    "-1", "-0", "+1", "08",  # "08": base 0 makes it octal, 8 is not a digit
    "9223372036854775807",   # S64_MAX
    "9223372036854775808",   # S64_MAX + 1: ERANGE in kstrtoll
    "-9223372036854775808",  # S64_MIN
    "-9223372036854775809",
    "18446744073709551615",  # U64_MAX
    "18446744073709551616",  # U64_MAX + 1: ERANGE in kstrtoull
    "99999999999999999999999",
    "\x00", "1\x00", "\xff",
    "1" * 4096,              # exactly max_write_len (a page): parsed, overflows
    "1" * 5000,              # over a page: E2BIG before any parsing
]


def spellings(v: str) -> list[str]:
    """kstrto*() take one trailing newline; strstrip() users take any space."""
    return [v, v + "\n", v + "\n\n", " " + v, v + " ", v + " \n", "\t" + v + "\n"]


def base0(n: int) -> list[str]:
    """Base-0 spellings of n: hex, octal, explicit plus."""
    return [f"{n:#x}", f"{n:#X}", f"0{n:o}", f"+{n}"]


def numeric(values: list[str], example: int) -> list[str]:
    return values + spellings(str(example)) + base0(example) + GENERIC


def textual(values: list[str], example: str) -> list[str]:
    return values + spellings(example) + GENERIC


FLAG = numeric(["0", "1", "2"], 1)  # write_u64 flags: any non-zero sets
SIZE = numeric([  # memparse() sizes, page rounding, "-1" = unlimited
    "0", "1", "4095", "4096", "4097", "1k", "1K", "4k", "1m", "1M", "1g", "1G", "1t", "1P", "1E",
    "8E", "16E", "1b", "1kk", "1 k", "-2", "max", "9223372036854771712", "9223372036854775807",
], 1 << 20)
RESET = numeric(["0", "1"], 0)  # counters: only a (specific) write resets them
DEVICE_RULE = textual([  # devcgroup_update_access: "a" or "TYPE MAJ:MIN ACC"
    "a", "a *:* rwm", "c 1:3 rwm", "b 8:* r", "c *:* m", "b *:* rwm", "x 1:3 r", "c 1:3", "c 1:3 rwmx",
    "c 1:3 rrr", "c 1 rwm", "c 1:3  rwm", "c 1:3 rwm junk", "c 4294967296:1 r", "A", "a 1:3 r",
], "c 1:3 rwm")
BLK_THROTTLE = textual([  # blkg_conf_prep: "MAJ:MIN VALUE"
    f"{DISK} 1048576", f"{DISK} 0", f"{DISK} -1", f"{DISK} max", "1:2 100", DISK, "254 100",
    f"{DISK} 0x10",
], f"{DISK} 1048576")

TABLE: dict[str, list[str]] = {
    # core (cgroup1_base_files)
    "cgroup.clone_children": FLAG,
    "notify_on_release": FLAG,
    # cpu (cpu_legacy_files)
    "cpu.shares": numeric(["0", "1", "2", "3", "1024", "262144", "262145"], 512),
    "cpu.idle": numeric(["0", "1", "2"], 1),
    "cpu.cfs_period_us": numeric(["0", "999", "1000", "50000", "1000000", "1000001"], 50000),
    "cpu.cfs_quota_us": numeric(["-2", "0", "999", "1000", "50000", "200000", "17592186044415",
                                 "17592186044416"], 50000),
    "cpu.cfs_burst_us": numeric(["0", "1000", "50000"], 1000),
    "cpu.rt_period_us": numeric(["0", "1", "999999", "1000000", "1000001"], 500000),
    "cpu.rt_runtime_us": numeric(["0", "1", "950000"], 0),
    # cpuacct: only 0 resets usage (cpuusage_write)
    "cpuacct.usage": RESET,
    # cpuset (legacy_files)
    "cpuset.cpus": textual(["0", "1", ALL_CPUS, "1-0", "0,1", "0,0", "2", "0-2", "0-1:1/2", "0-N", "N",
                            "0-", ",0", "0,,1", "0x1", "64", "4096"], ALL_CPUS),
    "cpuset.mems": textual(["0", "1", ALL_MEMS, "0-0", "1-0", "64"], ALL_MEMS),
    "cpuset.cpu_exclusive": FLAG,
    "cpuset.mem_exclusive": FLAG,
    "cpuset.mem_hardwall": FLAG,
    "cpuset.memory_migrate": FLAG,
    "cpuset.memory_spread_page": FLAG,
    "cpuset.memory_spread_slab": FLAG,
    "cpuset.sched_load_balance": FLAG,
    "cpuset.sched_relax_domain_level": numeric(["-2", "-1", "0", "1", "5", "6"], 1),
    # memory (mem_cgroup_legacy_files)
    "memory.limit_in_bytes": SIZE,
    "memory.memsw.limit_in_bytes": SIZE,
    "memory.soft_limit_in_bytes": SIZE,
    "memory.kmem.limit_in_bytes": SIZE,
    "memory.kmem.tcp.limit_in_bytes": SIZE,
    "memory.failcnt": RESET,
    "memory.max_usage_in_bytes": RESET,
    "memory.memsw.failcnt": RESET,
    "memory.memsw.max_usage_in_bytes": RESET,
    "memory.kmem.failcnt": RESET,
    "memory.kmem.max_usage_in_bytes": RESET,
    "memory.kmem.tcp.failcnt": RESET,
    "memory.kmem.tcp.max_usage_in_bytes": RESET,
    "memory.force_empty": numeric(["0", "1"], 1),
    "memory.swappiness": numeric(["0", "60", "100", "101"], 10),
    "memory.use_hierarchy": FLAG,
    "memory.move_charge_at_immigrate": numeric(["0", "1", "2", "3", "4"], 3),
    "memory.oom_control": FLAG,
    "cgroup.event_control": textual(["0 0", "0 0 x", "1 2 3", "-1 -1 x"], "0 0"),
    # devices
    "devices.allow": DEVICE_RULE,
    "devices.deny": DEVICE_RULE,
    # freezer
    "freezer.state": textual(["THAWED", "FROZEN", "FREEZING", "thawed", "Frozen"], "FROZEN"),
    # pids: "max" or 0..PID_MAX_LIMIT (pids_max_write)
    "pids.max": textual(["max", "0", "1", "4194304", "4194305", "Max"], "10") + base0(10),
    # blkio (bfq + throttle)
    "blkio.bfq.weight": numeric(["0", "1", "100", "1000", "1001", "default 100"], 500),
    "blkio.bfq.weight_device": textual(["default 100", "default 0", "default 1001", f"{DISK} 100",
                                        f"{DISK} 0", "1:2 100", DISK, f"{DISK} default"], f"{DISK} 500"),
    "blkio.throttle.read_bps_device": BLK_THROTTLE,
    "blkio.throttle.write_bps_device": BLK_THROTTLE,
    "blkio.throttle.read_iops_device": BLK_THROTTLE,
    "blkio.throttle.write_iops_device": BLK_THROTTLE,
    "blkio.reset_stats": numeric(["0", "1"], 1),
}

# What to read back after a write, when not (only) the file itself.
READ_BACK: dict[str, tuple[str, ...]] = {
    "devices.allow": ("devices.list",),
    "devices.deny": ("devices.list",),
    "cpuset.cpus": ("cpuset.cpus", "cpuset.effective_cpus"),
    "cpuset.mems": ("cpuset.mems", "cpuset.effective_mems"),
    "freezer.state": ("freezer.state", "freezer.self_freezing"),
    "memory.oom_control": ("memory.oom_control",),
    "memory.force_empty": (),   # write-only; nothing observable in an empty group
    "blkio.reset_stats": (),
    "cgroup.event_control": (),
}

# Base set-up before writing into its children: a cpuset child can only get
# cpus/mems that its parent has (validate_change), and a fresh base has none.
PREPARE: dict[str, list[tuple]] = {
    "cpuset": [("write", "cpuset.cpus", ALL_CPUS), ("write", "cpuset.mems", ALL_MEMS)],
}

# procs/tasks are written by pid, handled separately below.
PID_FILES = ("cgroup.procs", "tasks")


def _writable() -> list:
    out = []
    for controller in CONTROLLERS:
        hier = hier_dir(controller)
        extras = VENDOR_EXTRAS.get(hier, set())
        for name, (mode, _content) in sorted(INVENTORY[hier]["child"].items()):
            if int(mode, 0) & 0o222 and name not in extras and name not in PID_FILES:
                out.append(pytest.param(controller, name, id=f"{hier}:{name}"))
    return out


WRITABLE = _writable()


def prepare(pair, controller: str) -> list[str]:
    kernel, cand = pair
    steps = PREPARE.get(hier_dir(controller), [])
    return compare(f"{controller} prepare", kernel.run(steps), cand.run(steps), kernel.label, cand.label)


def test_every_writable_file_has_an_input_table():
    missing = [p.values[1] for p in WRITABLE if p.values[1] not in TABLE]
    assert not missing, f"no input table for: {missing}"


@pytest.mark.parametrize("controller,filename", WRITABLE)
def test_write_table(controller, filename, pair):
    kernel, cand = pair
    problems = prepare(pair, controller)
    assert not problems, "\n".join(problems)
    reads = READ_BACK.get(filename, (filename,))
    seen = set()
    for text in TABLE[filename]:
        if text in seen:
            continue
        seen.add(text)
        steps = [("mkdir", "w"), ("write", f"w/{filename}", text)]
        steps += [("read", f"w/{r}") for r in reads]
        steps.append(("rmdir", "w"))
        problems += compare(f"{controller} {filename} <- {short(text)}",
                            kernel.run(steps), cand.run(steps), kernel.label, cand.label)
    assert not problems, f"{len(problems)} differences:\n" + "\n".join(problems)


# ---------------------------------------------------------------------------
# procs / tasks: inputs naming a sleeper process S1 ({S1} is its pid)
# ---------------------------------------------------------------------------

PID_INPUTS = [
    "{S1}", "{S1}\n", "{S1}\n\n", " {S1} ", "\t{S1}\n", "{S1:#x}", "0{S1:o}", "+{S1}", "-{S1}",
    "{S1}junk", "{S1} {S1}",
]
# Inputs naming no live process: safe on every hierarchy, memory included.
NO_PID_INPUTS = [
    "2147483647",  # no such pid: ESRCH
    "2147483648",  # over kstrtoint's range: EINVAL
    "-1", "0x", "junk", "", "\n", "1" * 4096, "1" * 5000,
]
# Where a fresh cgroup cannot take tasks until configured.
ATTACH_SETUP = {"cpuset": [("write", "w/cpuset.cpus", ALL_CPUS), ("write", "w/cpuset.mems", ALL_MEMS)]}


@pytest.mark.parametrize("filename", PID_FILES)
@pytest.mark.parametrize("controller", CONTROLLERS)
def test_pid_write_table(controller, filename, pair):
    kernel, cand = pair
    problems = prepare(pair, controller)
    hier = hier_dir(controller)
    # Never move a process on the real memory hierarchy (see PathSurface).
    inputs = NO_PID_INPUTS if hier == "memory" else PID_INPUTS + NO_PID_INPUTS
    for text in inputs:
        steps = [("mkdir", "w")] + ATTACH_SETUP.get(hier, [])
        steps += [("write", f"w/{filename}", text), ("read", "w/cgroup.procs"), ("read", "w/tasks")]
        if "{S1" in text:
            steps.append(("kill", "S1"))
        steps.append(("rmdir", "w"))
        problems += compare(f"{controller} {filename} <- {short(text)}", kernel.run(steps), cand.run(steps),
                            kernel.label, cand.label)
    assert not problems, f"{len(problems)} differences:\n" + "\n".join(problems)

"""What a runtime that sizes itself from cgroup v1 sees (Go's automaxprocs,
the JVM, .NET): each hierarchy found through /proc/self/mountinfo entries of
fstype "cgroup" with the controller in the super options (shadowed entries
included, the last one winning), the cgroup from /proc/self/cgroup, the files
read at <mount point>/<path>. Prints one JSON object."""

import json

mounts = {}
with open("/proc/self/mountinfo") as f:
    for line in f:
        fields = line.split()
        sep = fields.index("-")
        if fields[sep + 1] == "cgroup":
            for option in fields[sep + 3].split(","):
                mounts[option] = fields[4]
paths = {}
with open("/proc/self/cgroup") as f:
    for line in f:
        _, controllers, path = line.rstrip("\n").split(":", 2)
        for c in controllers.split(","):
            if c:
                paths[c] = path


def read(controller, name):
    if controller not in mounts or controller not in paths:
        return None
    try:
        with open(f"{mounts[controller]}{paths[controller].rstrip('/')}/{name}") as f:
            return f.read().strip()
    except FileNotFoundError:  # a root cgroup has no limit files (pids.max)
        return None


quota, period = read("cpu", "cpu.cfs_quota_us"), read("cpu", "cpu.cfs_period_us")
print(json.dumps({
    "cpuQuota": int(quota) / int(period) if quota and int(quota) > 0 else None,
    "memoryLimit": read("memory", "memory.limit_in_bytes"),
    "pidsMax": read("pids", "pids.max"),
    "paths": paths,
}))

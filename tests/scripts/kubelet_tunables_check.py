"""What kubelet's setupKernelTunables does (pkg/kubelet/cm/container_manager_linux.go):
read six sysctls, write the desired value where it differs, read back.
Also: cap_last_cap reads a number, /dev/kmsg opens. Prints JSON, exits 0 on success."""

import json
import sys

DESIRED = {
    "vm/overcommit_memory": 1,
    "vm/panic_on_oom": 0,
    "kernel/panic": 10,
    "kernel/panic_on_oops": 1,
    "kernel/keys/root_maxkeys": 1000000,
    "kernel/keys/root_maxbytes": 25000000,
}

report = {"tunables": {}, "errors": []}
for key, want in DESIRED.items():
    path = f"/proc/sys/{key}"
    try:
        with open(path) as f:
            before = int(f.read().strip())
        if before != want:
            with open(path, "w") as f:
                f.write(str(want))
        with open(path) as f:
            after = int(f.read().strip())
        report["tunables"][key] = [before, after]
        if after != want:
            report["errors"].append(f"{key}: wrote {want}, reads {after}")
    except OSError as exc:
        report["errors"].append(f"{key}: {exc}")
try:
    report["cap_last_cap"] = int(open("/proc/sys/kernel/cap_last_cap").read())
except (OSError, ValueError) as exc:
    report["errors"].append(f"cap_last_cap: {exc}")
try:
    open("/dev/kmsg", "rb").close()
    report["kmsg"] = True
except OSError as exc:
    report["errors"].append(f"/dev/kmsg: {exc}")
print(json.dumps(report))
sys.exit(1 if report["errors"] else 0)

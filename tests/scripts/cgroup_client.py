"""A cgroup client as third-party tools are written: it finds the
hierarchies in /proc/self/mountinfo (fstype cgroup or cgroup2, mount point
directly under /sys/fs/cgroup, every line, covered ones included), then
creates one cgroup NAME in every one of them through the announced mount
point, lists it, reads its files and removes it.

    cgroup_client.py NAME

Prints one JSON object, mount point -> {"fstype", "open", "mkdir",
"entries": [[name, mode], ...] in readdir order, "reads": {file: [kind,
value]} (cgroup v1 only), "rmdir"}; outcomes are ["ok", ...] or ["err",
"ENAME"]. It writes nothing but the mkdir/rmdir of NAME.
"""

import errno
import json
import os
import sys

CG = "/sys/fs/cgroup"


def announced() -> list[tuple[str, str]]:
    out: dict[str, str] = {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            fstype = fields[fields.index("-") + 1]
            mountpoint = fields[4].encode().decode("unicode_escape")
            if fstype in ("cgroup", "cgroup2") and os.path.dirname(mountpoint) == CG:
                out[mountpoint] = fstype
    return list(out.items())


def outcome(fn):
    try:
        return ["ok", fn()]
    except OSError as exc:
        return ["err", errno.errorcode.get(exc.errno, str(exc.errno))]


def read(path: str):
    def go():
        with open(path, "rb", buffering=0) as f:  # read(2) until EOF
            return f.read().decode("latin-1")
    return outcome(go)


def visit(mountpoint: str, fstype: str, name: str) -> dict:
    result: dict = {"fstype": fstype}
    try:
        top = os.open(mountpoint, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError as exc:
        result["open"] = ["err", errno.errorcode.get(exc.errno, str(exc.errno))]
        return result
    result["open"] = ["ok", None]
    try:
        result["mkdir"] = outcome(lambda: os.mkdir(name, dir_fd=top))
        if result["mkdir"][0] != "ok":
            return result
        fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=top)
        try:
            names = os.listdir(fd)
            result["entries"] = [[n, os.stat(n, dir_fd=fd, follow_symlinks=False).st_mode] for n in names]
            if fstype == "cgroup":
                result["reads"] = {n: read(os.path.join(mountpoint, name, n)) for n in names}
        finally:
            os.close(fd)
        result["rmdir"] = outcome(lambda: os.rmdir(name, dir_fd=top))
    finally:
        os.close(top)
    return result


def main(name: str) -> int:
    print(json.dumps({mp: visit(mp, fstype, name) for mp, fstype in announced()}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))

"""What a restarted fuse-raw server needs to answer the kernel's node ids.

When the supervisor holds the FUSE connection (supervisor.py), the kernel
keeps its dentries and node ids across a server crash, and a new server must
answer to them. FsOps numbers inodes in the order nodes are met, and cgroup
keys carry serials that a restored model does not reproduce, so neither the
numbers nor the keys can be recomputed. Instead the server appends, before it
sends the reply that hands a node id to the kernel, where that inode was
found (its names from the root) and every rename; a new server replays the
log and looks the paths up again (FsOps.restore_inodes).

Appends go to the page cache only (no fsync): they must survive the
process, not the machine, and a machine crash ends the connection anyway.
"""

from __future__ import annotations

import json
import os


def open_log(path: str, fresh: bool) -> int:
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC | (os.O_TRUNC if fresh else 0)
    return os.open(path, flags, 0o600)


def append(fd: int, events: list) -> None:
    lines = []
    for event in events:
        if event[0] == "inode":
            lines.append(json.dumps({"i": event[1], "p": list(event[2])}))
        else:
            lines.append(json.dumps({"from": list(event[1]), "to": list(event[2])}))
    data = ("\n".join(lines) + "\n").encode()
    while data:
        data = data[os.write(fd, data):]


def replay(path: str) -> dict[int, tuple[str, ...]]:
    """inode -> its current path, after the logged renames. A path met again
    under a newer inode (removed and made again) belongs to the newer one."""
    paths: dict[int, tuple[str, ...]] = {}
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return {}
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError:
            continue  # a line cut short by the crash
        if "i" in event:
            path_ = tuple(event["p"])
            for ino in [i for i, p in paths.items() if p == path_]:
                del paths[ino]
            paths[int(event["i"])] = path_
        elif "from" in event:
            old, new = tuple(event["from"]), tuple(event["to"])
            for ino, p in list(paths.items()):
                if p[:len(old)] == old:
                    paths[ino] = new + p[len(old):]
    return paths


def remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass

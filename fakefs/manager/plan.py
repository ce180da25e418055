"""Turning a profile into a list of mount steps, authentic first.

Planning only looks at the machine (mountinfo, which paths exist, whether a
real cgroupfs controller can be mounted: probed in a scratch directory and
undone at once); it changes nothing that stays. Each step says what, where
and why, so ``--dry-run`` shows exactly what ``apply`` will do.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from dataclasses import asdict, dataclass, field

from fakefs.model.procviews import VIEW_CONTROLLERS, VIEW_PATHS, VIEWS_DIR, parse_proc_cgroup
from fakefs.model.tree import parse_hierarchy_spec
from fakefs.host.facts import fuse_ignores_lseek
from fakefs.host.mountinfo import read_mounts
from fakefs.host.sysmount import mount, umount
from fakefs.manager.profile import Profile

PROC_SYS = "/proc/sys"


@dataclass
class Step:
    action: str  # keep | skip | mkdir | touch | symlink | mount-tmpfs | mount-cgroup | bind | start-daemon
    target: str
    why: str
    source: str = ""
    options: dict = field(default_factory=dict)

    def describe(self) -> str:
        src = f" {self.source} ->" if self.source else ""
        opts = ""
        if self.options.get("fstype_options"):
            opts = f" [{self.options['fstype_options']}]"
        if self.action == "start-daemon":
            opts = f" [{self.options.get('tree')}, backend {self.options.get('backend', 'auto')}]"
        return f"{self.action:13}{src} {self.target}{opts}  # {self.why}"

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class Plan:
    profile: str
    steps: list[Step]
    stage: str

    def describe(self) -> str:
        lines = [f"plan for profile {self.profile} (staging {self.stage}):"]
        lines += [f"  {i + 1:2}. {s.describe()}" for i, s in enumerate(self.steps)]
        return "\n".join(lines)


def authentic_cgroup_mounts(target: str) -> dict[str, str]:
    """controller (or name=X) -> mountpoint, for real cgroup v1 mounts under target."""
    found: dict[str, str] = {}
    for m in read_mounts():
        if m.fstype != "cgroup" or os.path.dirname(m.mountpoint) != target:
            continue
        for opt in m.super_options.split(","):
            if opt in ("rw", "ro") or opt.startswith(("release_agent", "clone_children", "noprefix", "xattr")):
                continue
            found[opt] = m.mountpoint
    return found


def can_mount_cgroup(controllers: list[str], name: str | None) -> tuple[bool, str]:
    """Try a real cgroupfs mount of exactly these controllers in a scratch dir."""
    opts = ",".join(controllers + ([f"name={name}"] if name else []))
    scratch = tempfile.mkdtemp(prefix="fakefs-probe-cg-")
    try:
        mount("cgroup", scratch, "cgroup", 0, opts)
    except OSError as exc:
        return False, f"mount -t cgroup -o {opts}: {errno.errorcode.get(exc.errno, exc.errno)}"
    else:
        # gVisor answers "-o name=systemd" with a hierarchy of all its
        # controllers (and then EBUSY for ever after): only a mount that
        # shows what was asked for counts.
        got = next((m.super_options for m in read_mounts() if m.mountpoint == scratch), "")
        umount(scratch, detach=True)
        missing = [o for o in opts.split(",") if o not in got.split(",")]
        if missing:
            return False, f"mount -t cgroup -o {opts} gives a hierarchy of {got}"
        return True, f"mount -t cgroup -o {opts} works here"
    finally:
        os.rmdir(scratch)


def _is_tmpfs(path: str) -> bool:
    return any(m.mountpoint == path and m.fstype == "tmpfs" for m in read_mounts())


def plan_cgroup(profile: Profile, stage: str, probe=can_mount_cgroup) -> list[Step]:
    steps: list[Step] = []
    target = profile.cgroup_target
    if not profile.hierarchies:
        return steps
    if not os.path.isdir(target):
        return [Step("skip", target, "cgroup target does not exist")]
    # authentic = "never" is the profile asking to hide the real hierarchies.
    authentic = authentic_cgroup_mounts(target) if profile.authentic == "prefer" else {}
    keep: list[tuple[str, str]] = []  # (dirname, mountpoint)
    real_new: list[tuple[str, str]] = []  # (dirname, options)
    fake: list[str] = []  # hierarchy specs served by fakefs
    for spec in profile.hierarchies:
        controllers, name = parse_hierarchy_spec(spec)
        keys = controllers + ([f"name={name}"] if name else [])
        covered = [authentic[k] for k in keys if k in authentic]
        dirname = ",".join(controllers) if controllers else name
        if len(covered) == len(keys):
            for mp in sorted(set(covered)):
                keep.append((os.path.basename(mp), mp))
            continue
        if covered:
            # Part of the group is mounted authentically elsewhere: a second
            # mount with a different controller set is EBUSY in the kernel.
            for mp in sorted(set(covered)):
                keep.append((os.path.basename(mp), mp))
            keys = [k for k in keys if k not in authentic]
            controllers = [k for k in keys if not k.startswith("name=")]
            name = next((k[5:] for k in keys if k.startswith("name=")), None)
            dirname = ",".join(controllers) if controllers else name
            spec = ",".join(keys)
        if profile.authentic == "prefer":
            ok, why = probe(controllers, name)
            if ok:
                real_new.append((dirname, ",".join(keys)))
                continue
            fake.append(spec)
            steps.append(Step("skip", os.path.join(target, dirname), f"no authentic cgroupfs: {why}; fakefs serves it"))
        else:
            fake.append(spec)
    for dirname, mp in dict(keep).items():
        steps.append(Step("keep", mp, "authentic cgroupfs already mounted"))
    if not real_new and not fake:
        return steps
    # New directories are needed under target. Creating them in the host's
    # tmpfs would leak into every namespace, so stash the authentic mounts,
    # put a fresh tmpfs on target, and bring them back.
    stash = os.path.join(stage, "stash")
    steps.append(Step("mkdir", stash, "stash for authentic mounts while a fresh tmpfs goes over the target"))
    kept = sorted(dict(keep).items())
    for dirname, mp in kept:
        steps.append(Step("mkdir", os.path.join(stash, dirname), "stash point"))
        steps.append(Step("bind", os.path.join(stash, dirname), "keep the authentic mount", source=mp))
    steps.append(Step("mount-tmpfs", target, "a private tmpfs so new hierarchy dirs never touch the host's",
                      options={"data": "mode=755"}))
    for dirname, mp in kept:
        steps.append(Step("mkdir", os.path.join(target, dirname), "hierarchy dir"))
        steps.append(Step("bind", os.path.join(target, dirname), "authentic cgroupfs, unchanged",
                          source=os.path.join(stash, dirname)))
    for dirname, opts in real_new:
        steps.append(Step("mkdir", os.path.join(target, dirname), "hierarchy dir"))
        steps.append(Step("mount-cgroup", os.path.join(target, dirname), "authentic cgroupfs can be mounted here",
                          options={"fstype_options": opts}))
    if fake:
        fake_root = os.path.join(stage, "cgroup")
        steps.append(Step("mkdir", fake_root, "mount point of the fake hierarchies"))
        steps.append(Step("start-daemon", fake_root, "serve the hierarchies the sandbox cannot mount",
                          options={"tree": "cgroup", "hierarchies": fake}))
        for spec in fake:
            controllers, name = parse_hierarchy_spec(spec)
            dirname = ",".join(controllers) if controllers else name
            steps.append(Step("mkdir", os.path.join(target, dirname), "hierarchy dir"))
            steps.append(Step("bind", os.path.join(target, dirname), "fake hierarchy",
                              source=os.path.join(fake_root, dirname)))
    for spec in list(dict.fromkeys([o for _, o in real_new] + [f for f in fake])):
        controllers, _ = parse_hierarchy_spec(spec)
        if len(controllers) > 1:
            for alias in controllers:
                steps.append(Step("symlink", os.path.join(target, alias), "alias, as systemd makes it",
                                  source=",".join(controllers)))
    return steps


def _deepest_existing(path: str) -> str:
    while not os.path.lexists(path):
        path = os.path.dirname(path)
    return path


def _real_writable(path: str) -> bool:
    try:
        return bool(os.stat(path).st_mode & stat.S_IWUSR)
    except OSError:
        return False


def plan_overlays(profile: Profile, stage: str) -> list[Step]:
    """/proc/sys entries and node files: keep what is real and usable; for the
    rest, overlay the deepest existing directory with a merged view (real
    entries pass through, missing ones are added)."""
    steps: list[Step] = []
    needed: dict[str, list[dict]] = {}  # overlay root -> synthetic entries
    for entry in profile.procsys_entries:
        path = os.path.join(PROC_SYS, entry)
        must_write = entry in profile.procsys_writable
        if os.path.isfile(path) and (not must_write or _real_writable(path)):
            steps.append(Step("keep", path, "real entry present" + (" and writable" if must_write else "")))
            continue
        root = _deepest_existing(os.path.dirname(path)) if not os.path.isfile(path) else os.path.dirname(path)
        why = "missing" if not os.path.exists(path) else "read-only here, consumers write it"
        needed.setdefault(root, []).append({"kind": "procsys", "path": entry, "why": why,
                                            "override": os.path.exists(path)})
    for path, spec in profile.files.items():
        if os.path.exists(path):
            steps.append(Step("keep", path, "real file present"))
            continue
        parent = _deepest_existing(os.path.dirname(path))
        if spec.kind == "devnull":
            steps.append(Step("touch", path, "bind target must exist"))
            steps.append(Step("bind", path, "stand-in: opens and reads like an idle /dev/kmsg", source="/dev/null"))
            continue
        if parent in ("/proc", "/dev", "/sys", "/"):
            reason = f"cannot add {path} without hiding all of {parent}"
            if spec.optional:
                steps.append(Step("skip", path, reason + " (optional)"))
                continue
            steps.append(Step("skip", path, reason))
            continue
        needed.setdefault(parent, []).append({"kind": "text", "path": path, "content": spec.content,
                                              "mode": spec.mode, "why": "missing"})
    # One overlay per root; a root below another root is covered by it.
    roots = sorted(needed)
    for root in roots:
        if any(root != other and root.startswith(other.rstrip("/") + "/") for other in roots):
            outer = next(o for o in roots if root != o and root.startswith(o.rstrip("/") + "/"))
            needed[outer].extend(needed.pop(root))
    if not needed:
        return steps
    overlay_mnt = os.path.join(stage, "overlay")
    views = {}
    for root, entries in sorted(needed.items()):
        views[_view_name(root)] = {"real": root, "entries": entries}
    steps.append(Step("mkdir", overlay_mnt, "mount point of the merged views"))
    steps.append(Step("start-daemon", overlay_mnt, "serve merged real+synthetic directories",
                      options={"tree": "overlay", "views": views}))
    for root, entries in sorted(needed.items()):
        names = ", ".join(sorted(os.path.relpath(e["path"] if e["kind"] == "text" else os.path.join(PROC_SYS, e["path"]), root)
                                 for e in entries))
        steps.append(Step("bind", root, f"merged view adds/overrides: {names}",
                          source=os.path.join(overlay_mnt, _view_name(root))))
    return steps


def _view_name(root: str) -> str:
    return root.strip("/").replace("/", "_") or "root"


# cgroup v1 mount options that are not controllers.
_V1_MOUNT_OPTIONS = {"rw", "ro", "none", "noprefix", "clone_children", "xattr", "cpuset_v2_mode", "favordynmods"}
# The cgroup2 mount of a hybrid host: runc and crun create and join a cgroup
# there too. fakefs serves it as a controller-less hierarchy (cgroup.procs,
# tasks, mkdir/rmdir), which is all a runtime does with it; its v2-only files
# (cgroup.controllers, cgroup.subtree_control, ...) are not modelled.
HYBRID_UNIFIED = "unified"


def visible_mounts() -> list:
    """Mounts a path lookup can reach: mountinfo still lists mounts hidden
    under a later one (e.g. the hierarchy mounts after a private tmpfs went
    over /sys/fs/cgroup). A mount is visible when resolving its mount point
    from the root, taking the last mount made at each step, ends on it."""
    mounts = read_mounts()
    ids = {m.mount_id for m in mounts}
    on: dict[tuple[int, str], int] = {}  # (parent mount, mount point) -> last mount there
    for m in mounts:
        on[(m.parent_id, m.mountpoint)] = m.mount_id
    roots = [m.mount_id for m in mounts if m.parent_id not in ids or m.parent_id == m.mount_id]
    if not roots:
        return mounts

    def resolve(path: str) -> int:
        cur = roots[0]
        prefixes = ["/"] + ["/" + "/".join(path.strip("/").split("/")[:i + 1])
                            for i in range(len(path.strip("/").split("/"))) if path.strip("/")]
        for prefix in prefixes:
            seen = set()
            while (cur, prefix) in on and cur not in seen:
                seen.add(cur)
                cur = on[(cur, prefix)]
        return cur

    return [m for m in mounts if resolve(m.mountpoint) == m.mount_id]


def subtree_hierarchies(target: str) -> list[tuple[str, str | None, str]]:
    """(mountpoint, hierarchy spec or None, why) for each authentic cgroup
    mount directly under target: v1 hierarchies, and the hybrid cgroup2 one."""
    from fakefs.model.controllers import CONTROLLERS

    found: list[tuple[str, str | None, str]] = []
    for m in visible_mounts():
        if os.path.dirname(m.mountpoint) != target:
            continue
        if m.fstype == "cgroup2" and os.path.basename(m.mountpoint) == HYBRID_UNIFIED:
            found.append((m.mountpoint, f"name={HYBRID_UNIFIED}", "hybrid cgroup2 mount"))
            continue
        if m.fstype != "cgroup":
            continue
        keys, unknown = [], []
        for opt in m.super_options.split(","):
            if opt in _V1_MOUNT_OPTIONS or opt.startswith("release_agent="):
                continue
            (keys if opt in CONTROLLERS or opt.startswith("name=") else unknown).append(opt)
        if unknown:
            found.append((m.mountpoint, None, f"controller {unknown[0]} is not modelled by fakefs"))
        elif not keys:
            found.append((m.mountpoint, None, "no controller in its mount options"))
        else:
            found.append((m.mountpoint, ",".join(keys), "authentic cgroup v1 hierarchy"))
    return found


def plan_subtree(profile: Profile, stage: str) -> list[Step]:
    """A fake subtree at <hierarchy>/<subtree> for every authentic hierarchy:
    consumers still discover the authentic mounts, and what they create below
    <subtree> lives in fakefs. The mount point is a real child cgroup (made
    here if missing, and then removed on undo); the fake's top stands for it
    and starts with its settings."""
    target, parent = profile.cgroup_target, profile.subtree
    if not parent:
        return []
    if not os.path.isdir(target):
        return [Step("skip", target, "cgroup target does not exist")]
    steps: list[Step] = []
    specs: list[str] = []
    subtree_of: dict[str, str] = {}
    binds: list[tuple[str, str]] = []  # (real cgroup dir, model dirname)
    for mp, spec, why in subtree_hierarchies(target):
        real = os.path.join(mp, parent)
        if spec is None:
            steps.append(Step("skip", real, f"no fake subtree: {why}"))
            continue
        controllers, name = parse_hierarchy_spec(spec)
        dirname = ",".join(controllers) if controllers else name
        if os.path.lexists(real) and not os.path.isdir(real):
            steps.append(Step("skip", real, "exists and is not a cgroup directory"))
            continue
        if dirname in subtree_of:
            why = f"same hierarchy as {os.path.dirname(subtree_of[dirname])}"
        elif os.path.isdir(real):
            why = "existing real cgroup: the fake covers it, starts with its settings, and leaves it as is"
        else:
            why = None
        if why is None:
            steps.append(Step("mkdir", real, "throwaway real child cgroup to mount the fake subtree on (removed on undo)"))
        else:
            steps.append(Step("keep", real, why))
        if dirname not in subtree_of:
            specs.append(spec)
            subtree_of[dirname] = real
        binds.append((real, dirname))
    if not specs:
        if not steps:
            steps.append(Step("skip", target, "no authentic cgroup hierarchy mounted here"))
        return steps
    fake_root = os.path.join(stage, "subtree")
    steps.append(Step("mkdir", fake_root, "mount point of the fake subtrees"))
    steps.append(Step("start-daemon", fake_root, "serve one fake subtree per hierarchy, tops seeded from the real cgroups",
                      options={"tree": "cgroup", "hierarchies": specs, "subtree_of": subtree_of}))
    for real, dirname in binds:
        steps.append(Step("bind", real, f"fake subtree ({dirname}): cgroups made below here live in fakefs",
                          source=os.path.join(fake_root, dirname)))
    return steps


def make_plan(profile: Profile, stage: str, probe=can_mount_cgroup, backend: str = "auto") -> Plan:
    steps = [Step("mkdir", stage, "staging directory for this profile (private to this namespace's mounts)")]
    steps += plan_cgroup(profile, stage, probe)
    steps += plan_subtree(profile, stage)
    steps += plan_overlays(profile, stage)
    steps += plan_procviews(profile, stage, steps, backend)
    for step in steps:
        if step.action == "start-daemon":
            step.options["backend"] = backend
    return Plan(profile.name, steps, stage)


# -- /proc views ------------------------------------------------------------------
# lxcfs-style views (vfs/procviews.py): one bind mount of a single file over
# each real file, as lxcfs does (a file can only be bound over an existing
# one: where procfs lacks it, the view is skipped). In reader mode (``fakefs
# run --limit``) the daemon of the profile's fake cgroup tree serves them
# when there is one (its model knows which fake cgroup each process is in);
# otherwise, and in sandbox mode (profile node-capacity), a daemon of their own.

VIEW_REASONS = {
    "meminfo": "MemTotal = the smallest memory limit on the cgroup path, usage and memory.stat for the rest",
    "cpuinfo": "the processors of the cpuset, cut to ceil(quota/period) (lxcfs --enable-cfs)",
    "stat": "per-CPU lines of the visible CPUs with the cgroup's own CPU time (lxcfs cpuview)",
    "uptime": "the age of the reader's PID namespace (the machine's uptime for this one)",
    "loadavg": "the load of the cpu cgroup's tasks where its CPUs are limited",
    "swaps": "what memsw allows the cgroup to swap",
    "diskstats": "the blkio counters of the cgroup, per disk",
    "cpu-online": "0-(N-1) for the N visible CPUs (glibc's sysconf(_SC_NPROCESSORS_ONLN))",
}

def sandbox_cgroups(text: str | None = None) -> dict[str, str]:
    """The real cgroups this process (fakefs, in the sandbox) sits in."""
    if text is None:
        try:
            with open("/proc/self/cgroup") as f:
                text = f.read()
        except OSError:
            text = ""
    own = parse_proc_cgroup(text)
    return {c: own[c] for c in VIEW_CONTROLLERS if c in own}


def plan_procviews(profile: Profile, stage: str, steps: list[Step], backend: str = "auto") -> list[Step]:
    """Steps for ``profile.procviews``; a reader-mode spec may be added to
    the fake cgroup daemon already in ``steps``."""
    if not profile.procviews:
        return []
    out: list[Step] = []
    views = []
    for name in profile.procviews:
        path = VIEW_PATHS[name]
        if os.path.isfile(path):
            views.append(name)
        else:
            out.append(Step("skip", path, f"view {name}: no such file here, and a bind mount needs one"))
    if not views:
        return out
    mode = profile.procviews_limits
    spec: dict = {"views": views, "limits": mode}
    if mode == "sandbox":
        spec["cgroups"] = sandbox_cgroups()
        whose = "the sandbox's own cgroups"
        detail = " (" + (", ".join(f"{c}:{p}" for c, p in spec["cgroups"].items()) or "none: the machine's figures") + ")"
    else:
        whose, detail = "each reading process's cgroups", ""
    prelude: list[Step] = []
    if fuse_ignores_lseek() or backend == "tmpfs":
        # gVisor (and the tmpfs backend, whose files are replaced by rename:
        # a bind mount would keep the first): plain files in a tmpfs,
        # rendered every second for the cgroups fakefs run puts CMD in (its
        # own paths) or the sandbox's.
        copies = os.path.join(stage, "procviews-files")
        spec["copies"] = copies
        spec.setdefault("cgroups", sandbox_cgroups())
        if mode == "reader":
            whose = "the cgroups at fakefs's own paths (where fakefs run puts CMD)"
        whose += (", as files (the tmpfs backend)" if backend == "tmpfs" else
                  ", as files (gVisor's FUSE client ignores lseek, which free and top need)")
        prelude = [Step("mkdir", copies, "the /proc views as files"),
                   Step("mount-tmpfs", copies, "files the views' daemon rewrites every second",
                        options={"data": "mode=755"})]
    host = None
    if mode == "reader":
        host = next((s for s in steps if s.action == "start-daemon" and s.options.get("tree") == "cgroup"
                     and not s.options.get("subtree_of")), None)
    if host is not None:
        host.options["procviews"] = spec
        source = os.path.join(host.target, VIEWS_DIR)
        steps[steps.index(host):steps.index(host)] = prelude  # the files' tmpfs before its daemon
    else:
        source = os.path.join(stage, "procviews")
        out += prelude
        out.append(Step("mkdir", source, "mount point of the /proc views"))
        out.append(Step("start-daemon", source, f"serve /proc views rendered from {whose}{detail}",
                        options={"tree": "procviews", "procviews": spec}))
    source = spec.get("copies", source)
    for name in views:
        out.append(Step("bind", VIEW_PATHS[name], f"view {name} from {whose}: {VIEW_REASONS[name]}",
                        source=os.path.join(source, name)))
    return out

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

from fakefs.host.facts import fuse_ignores_lseek
from fakefs.host.mountinfo import read_mounts, visible_mounts
from fakefs.model.procviews import VIEW_CONTROLLERS, VIEW_PATHS, VIEWS_DIR, parse_proc_cgroup
from fakefs.host.sysmount import mount, umount
from fakefs.manager.layout import announced_mounts, host_links, layout_reason, systemd_aliases, unannounced
from fakefs.manager.profile import Profile
from fakefs.model.tree import default_dirname, hierarchy_keys, parse_hierarchy_spec, spec_of_super_options

PROC_SYS = "/proc/sys"


# Steps that only say something: apply does nothing for them.
NO_CHANGE = ("layout", "keep", "skip")


@dataclass
class Step:
    action: str  # layout | keep | skip | mkdir | touch | symlink | mount-tmpfs | mount-cgroup | bind | start-daemon
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
            runtimes = ", for container runtimes" if self.options.get("runtimes") else ""
            opts = f" [{self.options.get('tree')}, backend {self.options.get('backend', 'auto')}{runtimes}]"
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


def plan_cgroup(profile: Profile, stage: str, probe=can_mount_cgroup) -> list[Step]:
    """The profile's hierarchies at its cgroup target, authentic first, laid
    out as mountinfo announces them there (layout.py): an announced mount is
    kept (``prefer``) or served by fakefs at the same mount point with the
    same controllers (``never``); cgroup2 mounts and announced ones fakefs
    does not model stay authentic. Hierarchies nothing announces get
    systemd's layout."""
    target = profile.cgroup_target
    if not profile.hierarchies:
        return []
    if not os.path.isdir(target):
        return [Step("skip", target, "cgroup target does not exist")]
    prefer = profile.authentic == "prefer"
    announced = announced_mounts(target)
    wanted = {k for spec in profile.hierarchies for k in hierarchy_keys(spec)}
    steps: list[Step] = []
    kept: list[tuple[str, str, str]] = []  # (dirname, authentic mount point, why)
    mounted: list[tuple[str, str, str, str]] = []  # (dirname, fstype, options, why)
    fake: list[tuple[str, str]] = []  # (dirname, hierarchy spec served by fakefs)

    def authentic_or_fake(dirname: str, spec: str, note: str) -> None:
        if prefer:
            ok, why = probe(*parse_hierarchy_spec(spec))
            if ok:
                mounted.append((dirname, "cgroup", spec, f"authentic cgroupfs can be mounted here{note}"))
                return
            steps.append(Step("skip", os.path.join(target, dirname), f"no authentic cgroupfs: {why}; fakefs serves it"))
        fake.append((dirname, spec))

    covered: set[str] = set()
    for a in announced:
        if a.fstype == "cgroup2":
            if a.visible:
                kept.append((a.dirname, a.mountpoint, "announced cgroup2 mount: kept authentic"))
            else:
                mounted.append((a.dirname, "cgroup2", "", "announced cgroup2 mount, hidden here: mounted again "
                                                          "(the same hierarchy)"))
            continue
        if a.spec is None:
            if a.visible:
                kept.append((a.dirname, a.mountpoint, f"announced, {a.why}: kept authentic"))
            else:
                steps.append(Step("skip", a.mountpoint, f"announced, hidden here, and {a.why}"))
            continue
        keys = hierarchy_keys(a.spec)
        covered.update(keys)
        asked = bool(wanted.intersection(keys))
        if a.visible and (prefer or not asked):
            kept.append((a.dirname, a.mountpoint, "authentic cgroupfs already mounted" if asked
                         else "announced, not in the profile: kept authentic"))
        elif a.visible:
            fake.append((a.dirname, a.spec))
        else:
            authentic_or_fake(a.dirname, a.spec, " (announced, hidden here)")
    rest = unannounced(profile.hierarchies, covered)  # systemd's layout for these
    for spec in rest:
        authentic_or_fake(default_dirname(spec), spec, "")
    steps.insert(0, Step("layout", target, layout_reason(target, announced, rest)))
    for _, mp, why in kept:
        steps.append(Step("keep", mp, why))
    if not mounted and not fake:
        return steps
    # New directories are needed under target. Creating them in the host's
    # tmpfs would leak into every namespace, so stash the authentic mounts,
    # put a fresh tmpfs on target, and bring them back.
    stash = os.path.join(stage, "stash")
    steps.append(Step("mkdir", stash, "stash for authentic mounts while a fresh tmpfs goes over the target"))
    for dirname, mp, _ in kept:
        steps.append(Step("mkdir", os.path.join(stash, dirname), "stash point"))
        steps.append(Step("bind", os.path.join(stash, dirname), "keep the authentic mount", source=mp))
    links = host_links(target, {d for d, *_ in kept + mounted + fake})
    steps.append(Step("mount-tmpfs", target, "a private tmpfs so new hierarchy dirs never touch the host's",
                      options={"data": "mode=755"}))
    for dirname, _, why in kept:
        steps.append(Step("mkdir", os.path.join(target, dirname), "hierarchy dir"))
        steps.append(Step("bind", os.path.join(target, dirname), f"authentic, unchanged ({why})",
                          source=os.path.join(stash, dirname)))
    for dirname, fstype, opts, why in mounted:
        steps.append(Step("mkdir", os.path.join(target, dirname), "hierarchy dir"))
        steps.append(Step("mount-cgroup", os.path.join(target, dirname), why,
                          options={"fstype": fstype, "fstype_options": opts}))
    if fake:
        fake_root = os.path.join(stage, "cgroup")
        specs = list(dict.fromkeys(spec for _, spec in fake))
        steps.append(Step("mkdir", fake_root, "mount point of the fake hierarchies"))
        steps.append(Step("start-daemon", fake_root, "serve the hierarchies the sandbox cannot mount"
                          if prefer else "serve the hierarchies the profile fakes",
                          options={"tree": "cgroup", "hierarchies": specs, "runtimes": profile.runtimes}))
        for dirname, spec in fake:
            steps.append(Step("mkdir", os.path.join(target, dirname), "hierarchy dir"))
            steps.append(Step("bind", os.path.join(target, dirname), f"fake hierarchy ({spec})",
                              source=os.path.join(fake_root, default_dirname(spec))))
    placed = {d for d, *_ in kept + mounted + fake} | set(links)
    for name, dest in sorted(links.items()):
        steps.append(Step("symlink", os.path.join(target, name), "symlink of the host's layout", source=dest))
    for name, dest in systemd_aliases(rest, placed).items():
        steps.append(Step("symlink", os.path.join(target, name), "alias, as systemd makes it", source=dest))
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


# The cgroup2 mount of a hybrid host: runc and crun create and join a cgroup
# there too. Below it, fakefs serves a controller-less hierarchy (cgroup.procs,
# tasks, mkdir/rmdir), which is all a runtime does with it; its v2-only files
# (cgroup.controllers, cgroup.subtree_control, ...) are not modelled.
HYBRID_UNIFIED = "unified"


def subtree_hierarchies(target: str) -> list[tuple[str, str | None, str]]:
    """(mountpoint, hierarchy spec or None, why) for each authentic cgroup
    mount directly under target: v1 hierarchies, and the hybrid cgroup2 one."""
    found: list[tuple[str, str | None, str]] = []
    for m in visible_mounts():
        if os.path.dirname(m.mountpoint) != target:
            continue
        if m.fstype == "cgroup2" and os.path.basename(m.mountpoint) == HYBRID_UNIFIED:
            found.append((m.mountpoint, f"name={HYBRID_UNIFIED}", "hybrid cgroup2 mount"))
            continue
        if m.fstype != "cgroup":
            continue
        spec, why = spec_of_super_options(m.super_options)
        found.append((m.mountpoint, spec, "authentic cgroup v1 hierarchy" if spec else why))
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


def make_plan(profile: Profile, stage: str, probe=can_mount_cgroup, backend: str = "auto",
              command_cgroups: dict[str, str] | None = None) -> Plan:
    """``command_cgroups``: ``fakefs run``'s command will not be in this
    process's real cgroups but in these ({controller: path}, the children
    run makes): views rendered as files follow them."""
    steps = [Step("mkdir", stage, "staging directory for this profile (private to this namespace's mounts)")]
    steps += plan_cgroup(profile, stage, probe)
    steps += plan_subtree(profile, stage)
    steps += plan_overlays(profile, stage)
    steps += plan_procviews(profile, stage, steps, backend, command_cgroups)
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


def plan_procviews(profile: Profile, stage: str, steps: list[Step], backend: str = "auto",
                   command_cgroups: dict[str, str] | None = None) -> list[Step]:
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
        spec.setdefault("cgroups", sandbox_cgroups() if command_cgroups is None else
                        {c: command_cgroups[c] for c in VIEW_CONTROLLERS if c in command_cgroups})
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

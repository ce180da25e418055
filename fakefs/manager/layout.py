"""Which cgroup layout fakefs puts at a target, and why.

Clients nobody here wrote (libcgroup's tools, runc, kubelet, cAdvisor) find
cgroup hierarchies in /proc/self/mountinfo (or /proc/mounts) and then open
the mount points by path. The mounts fakefs covers stay listed there, so
wherever fakefs covers a target below which cgroup mounts are announced,
the tree in their place copies that layout: one directory per announced
mount point holding exactly the controllers its super options name (no
symlink where a directory was announced), the ``name=`` hierarchies, and
every cgroup2 mount kept authentic. Where nothing is announced (gVisor
before any mount, an empty directory), systemd's layout is the default.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from fakefs.host.mountinfo import Mount, read_mounts, visible_mounts
from fakefs.model.tree import (DEFAULT_HIERARCHIES, CgroupModel, default_dirname, hierarchy_keys, parse_hierarchy_spec,
                               spec_of_super_options)

CGROUP_FSTYPES = ("cgroup", "cgroup2")


@dataclass(frozen=True)
class AnnouncedMount:
    mountpoint: str
    fstype: str  # cgroup | cgroup2
    spec: str | None  # the v1 hierarchy fakefs serves for it; None: cgroup2, or a v1 mount it cannot serve
    why: str  # what it is, or why fakefs cannot serve it
    visible: bool  # a lookup of the mount point reaches it (not hidden under a later mount)

    @property
    def dirname(self) -> str:
        return os.path.basename(self.mountpoint)

    @property
    def label(self) -> str:
        """As a listing names it: ``cpu,cpuacct``, ``name=systemd``, ``cgroup2 unified``
        (a v1 mount fakefs cannot serve: its directory)."""
        if self.fstype == "cgroup2":
            return f"cgroup2 {self.dirname}"
        return self.spec or self.dirname


def announced_mounts(target: str) -> list[AnnouncedMount]:
    """The cgroup and cgroup2 mounts that mountinfo lists directly under
    ``target``, hidden ones included (a client discovers those too), one per
    mount point: the visible one, else the last listed; in mountinfo order."""
    target = os.path.normpath(target)
    mounts = read_mounts()
    visible = {m.mount_id for m in visible_mounts(mounts)}
    chosen: dict[str, Mount] = {}
    for m in mounts:
        if m.fstype not in CGROUP_FSTYPES or os.path.dirname(m.mountpoint) != target:
            continue
        previous = chosen.get(m.mountpoint)
        if previous is None or previous.mount_id not in visible:
            chosen[m.mountpoint] = m
    out: list[AnnouncedMount] = []
    owner: dict[str, tuple[str, str]] = {}  # controller or name=X -> (spec, mount point) holding it
    for m in chosen.values():
        is_visible = m.mount_id in visible
        if m.fstype == "cgroup2":
            out.append(AnnouncedMount(m.mountpoint, m.fstype, None, "cgroup2 hierarchy", is_visible))
            continue
        spec, why = spec_of_super_options(m.super_options)
        if spec is not None:
            clash = next((owner[k] for k in hierarchy_keys(spec) if k in owner and owner[k][0] != spec), None)
            if clash is not None:
                spec, why = None, f"its controllers overlap the hierarchy {clash[0]} at {clash[1]}"
            else:
                owner.update({k: (spec, m.mountpoint) for k in hierarchy_keys(spec)})
        out.append(AnnouncedMount(m.mountpoint, m.fstype, spec, why, is_visible))
    return out


def host_links(target: str, dirnames: set[str]) -> dict[str, str]:
    """Symlinks directly in ``target`` that name one of ``dirnames`` (a
    systemd host's ``cpu -> cpu,cpuacct``): part of the host's layout."""
    links: dict[str, str] = {}
    try:
        names = os.listdir(target)
    except OSError:
        return links
    for name in names:
        path = os.path.join(target, name)
        if name in dirnames or not os.path.islink(path):
            continue
        try:
            dest = os.readlink(path)
        except OSError:
            continue
        if dest.rstrip("/") in dirnames:
            links[name] = dest.rstrip("/")
    return links


def unannounced(specs: list[str] | tuple[str, ...], covered: set[str]) -> list[str]:
    """What of ``specs`` no announced hierarchy holds (``covered``: their
    controllers and names), each spec cut to those members."""
    out = []
    for spec in specs:
        keys = [k for k in hierarchy_keys(spec) if k not in covered]
        if keys:
            covered = covered | set(keys)
            out.append(",".join(keys))
    return out


def systemd_aliases(specs: list[str], taken: set[str]) -> dict[str, str]:
    """systemd's symlinks for hierarchies it lays out: one per member of a
    co-mounted hierarchy (``cpu -> cpu,cpuacct``), where the name is free."""
    links = {}
    for spec in specs:
        controllers, _ = parse_hierarchy_spec(spec)
        if len(controllers) > 1:
            for alias in controllers:
                if alias not in taken and alias not in links:
                    links[alias] = default_dirname(spec)
    return links


def layout_reason(target: str, announced: list[AnnouncedMount], unannounced_specs: list[str]) -> str:
    """One line for --dry-run: which layout a tree at ``target`` follows, and why."""
    if not announced:
        return (f"systemd layout (co-mounted controllers in one directory, a symlink per member): "
                f"mountinfo announces no cgroup mount under {target}")
    labels = ", ".join(a.label for a in announced)
    why = (f"follows mountinfo, which announces {len(announced)} cgroup mounts under {target} ({labels}): "
           f"clients open those mount points, so each stays a directory with exactly its controllers")
    if unannounced_specs:
        why += f"; {', '.join(unannounced_specs)} not announced: systemd's layout for them"
    return why


@dataclass
class TreeLayout:
    """The layout of one fake cgroup tree mounted at a target (``fakefs mount``)."""

    hierarchies: list[str]
    why: str
    dirnames: dict[str, str] | None = None  # spec -> directory, when not systemd's
    links: dict[str, str] | None = None  # symlink -> directory, when not systemd's
    hidden: list[str] = field(default_factory=list)  # announced mounts the tree hides, each with why
    # Announced mounts fakefs cannot serve (cgroup2, v1 hierarchies it does
    # not model): directory -> mount point. The tree has an empty directory
    # for each, and the daemon binds the authentic mount there.
    authentic: dict[str, str] = field(default_factory=dict)

    def model_layout(self) -> dict:
        """Keyword arguments of CgroupModel beyond the hierarchies."""
        return {k: v for k, v in (("dirnames", self.dirnames), ("links", self.links)) if v is not None}

    def describe(self, target: str) -> str:
        entries = CgroupModel(hierarchies=self.hierarchies, **self.model_layout()).entries()
        lines = [f"layout of the cgroup tree at {target}: {self.why}"]
        for name, what in entries.items():
            lines.append(f"  {name} -> {what}" if isinstance(what, str) else f"  {name}/  [{what.label}]")
        lines += [f"  {name}/  [authentic: {path}, bound back in]" for name, path in self.authentic.items()]
        lines += [f"  hides {h}" for h in self.hidden]
        return "\n".join(lines)


def mount_layout(target: str, asked: list[str] | None) -> TreeLayout:
    """The layout ``fakefs mount`` serves at ``target``: the hierarchies
    asked for with --hierarchy; else the v1 layout mountinfo announces under
    ``target`` (the mount covers those mounts), completed with the rest of
    systemd's; else systemd's. Announced cgroup2 mounts and v1 mounts fakefs
    does not model stay authentic: the daemon binds them back into the tree
    (runtime/serving.py)."""
    if asked:
        return TreeLayout(list(asked), "the hierarchies given with --hierarchy")
    announced = announced_mounts(target)
    if not announced:
        return TreeLayout(list(DEFAULT_HIERARCHIES), layout_reason(target, [], []))
    served: dict[str, str] = {}  # spec -> directory
    hidden = []
    authentic: dict[str, str] = {}
    for a in announced:
        if a.spec is None:
            if a.visible:
                authentic[a.dirname] = a.mountpoint
            else:
                hidden.append(f"{a.mountpoint} ({a.why}): covered already, not reachable to bind back")
        elif a.spec in served:
            hidden.append(f"{a.mountpoint} (the same hierarchy as {target}/{served[a.spec]}, served there)")
        else:
            served[a.spec] = a.dirname
    rest = unannounced(DEFAULT_HIERARCHIES, {k for spec in served for k in hierarchy_keys(spec)})
    dirnames = {**served, **{spec: default_dirname(spec) for spec in rest}}
    links = host_links(target, set(dirnames.values()))
    links.update(systemd_aliases(rest, set(dirnames.values()) | set(links)))
    for name in authentic:
        links.pop(name, None)
    return TreeLayout(list(dirnames), layout_reason(target, announced, rest), dirnames=dirnames, links=links,
                      hidden=hidden, authentic=authentic)

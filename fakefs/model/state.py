"""The model's state as a JSON-able dict, and back.

What a restarted daemon needs to show the same filesystem: every cgroup
(path, controller states, chmod/chown attributes), each hierarchy's
release_agent and which tasks were placed where. Live figures (usage,
statistics) are not state: they come from the machine again.

Decoding is driven by the dataclass annotations of each controller's state,
so only the declared types are ever built from the file (no pickle, no
arbitrary classes), and a file that does not fit the model (other
hierarchies, a field of the wrong type) is refused as a whole with
:class:`StateError` instead of being half applied.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

from fakefs.model.cftype import FileAttrs, WriteContext
from fakefs.model.cgroup import Cgroup, Hierarchy
from fakefs.model.errors import KernelError

FORMAT = 1


class StateError(Exception):
    """The saved state does not fit this model."""


# -- generic codec over annotated dataclasses --------------------------------------

def encode(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, bytes):
        # One char per byte (decode() knows from the annotation it is bytes).
        return value.decode("latin-1")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [encode(v) for v in value]
    if isinstance(value, (set, frozenset)):
        items = [encode(v) for v in value]
        return sorted(items, key=repr)  # a stable file for the same state
    if isinstance(value, dict):
        # Keys may be tuples or ints: pairs keep their type for decode().
        return [[encode(k), encode(v)] for k, v in value.items()]
    raise StateError(f"cannot save a {type(value).__name__}")


_hints_cache: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _hints_cache:
        try:
            _hints_cache[cls] = typing.get_type_hints(cls)
        except Exception as exc:  # an annotation this codec cannot resolve
            raise StateError(f"{cls.__name__}: {exc}") from None
    return _hints_cache[cls]


def decode(data: Any, tp: Any) -> Any:
    """Build a value of type ``tp`` from what :func:`encode` produced."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if data is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return decode(data, arg)
            except StateError as exc:
                errors.append(str(exc))
        raise StateError("; ".join(errors) or f"no type fits {data!r}")
    if tp is bool:
        if not isinstance(data, bool):
            raise StateError(f"expected a boolean, got {data!r}")
        return data
    if tp is int:
        if isinstance(data, bool) or not isinstance(data, int):
            raise StateError(f"expected an integer, got {data!r}")
        return data
    if tp is float:
        if isinstance(data, bool) or not isinstance(data, (int, float)):
            raise StateError(f"expected a number, got {data!r}")
        return float(data)
    if tp is str:
        if not isinstance(data, str):
            raise StateError(f"expected a string, got {data!r}")
        return data
    if tp is bytes:
        try:
            return data.encode("latin-1")
        except (AttributeError, UnicodeEncodeError):
            raise StateError(f"expected bytes as a latin-1 string, got {data!r}") from None
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(data, dict):
            raise StateError(f"expected a {tp.__name__} table")
        hints = _hints(tp)
        kwargs, later = {}, {}
        for f in dataclasses.fields(tp):
            if f.name not in data:
                continue  # a field added since the file was written: its default
            value = decode(data[f.name], hints[f.name])
            (kwargs if f.init else later)[f.name] = value
        try:
            obj = tp(**kwargs)
        except TypeError as exc:
            raise StateError(f"{tp.__name__}: {exc}") from None
        for name, value in later.items():
            setattr(obj, name, value)
        return obj
    if origin in (list, tuple, set, frozenset) or tp in (list, tuple, set, frozenset):
        if not isinstance(data, list):
            raise StateError(f"expected a list, got {data!r}")
        container = origin or tp
        if container is tuple:
            if len(args) == 2 and args[1] is Ellipsis:
                return tuple(decode(d, args[0]) for d in data)
            if args and len(args) != len(data):
                raise StateError(f"expected {len(args)} items, got {len(data)}")
            return tuple(decode(d, a) for d, a in zip(data, args)) if args else tuple(data)
        item = args[0] if args else Any
        return container(decode(d, item) for d in data)
    if origin is dict or tp is dict:
        if not isinstance(data, list) or not all(isinstance(p, list) and len(p) == 2 for p in data):
            raise StateError("expected a list of [key, value] pairs")
        kt, vt = args if args else (Any, Any)
        return {decode(k, kt): decode(v, vt) for k, v in data}
    raise StateError(f"cannot restore a value of type {tp!r}")


# -- the model ----------------------------------------------------------------------

def _cgroup_state(cg: Cgroup) -> dict:
    return {name: encode(value) for name, value in cg.state.items() if value is not None}


def dump(model) -> dict:
    """The model's state; ``json.dumps`` of it is the state file."""
    procs = model.processes
    out = {"format": FORMAT, "hierarchies": []}
    for mounted in model.mounts:
        h = mounted.hierarchy
        cgroups = []
        for cg in [h.root, *h.root.descendants()]:
            cgroups.append({"path": cg.path, "state": _cgroup_state(cg),
                            "attrs": [[name, encode(a)] for name, a in cg.attrs.items()]})
        placed = []
        for tid, cg in sorted(h.placed.items()):
            if cg.removed:
                continue
            placed.append([tid, cg.path, procs.start_time_of(tid)])
        out["hierarchies"].append({"label": h.label, "release_agent": h.release_agent,
                                   "cgroups": cgroups, "placed": placed})
    return out


def _state_types(h: Hierarchy, cg: Cgroup) -> dict[str, type]:
    """The dataclass of each controller's state, as a fresh cgroup has it."""
    return {name: type(value) for name, value in cg.state.items() if value is not None}


def restore(model, data: dict) -> None:
    """Rebuild the saved tree and values in ``model``, a freshly built model
    with the same hierarchies. All or nothing: the file is checked and
    decoded completely before the model is touched."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise StateError("not a fakefs state file of this version")
    saved = data.get("hierarchies")
    labels = [m.hierarchy.label for m in model.mounts]
    if not isinstance(saved, list) or [s.get("label") if isinstance(s, dict) else None for s in saved] != labels:
        raise StateError(f"state is for other hierarchies than {', '.join(labels)}")
    plans = [_plan_hierarchy(m.hierarchy, s) for m, s in zip(model.mounts, saved)]
    for mounted, plan in zip(model.mounts, plans):
        _apply_hierarchy(mounted.hierarchy, plan)
    model.changed()


def _plan_hierarchy(h: Hierarchy, saved: dict) -> dict:
    release_agent = saved.get("release_agent", "")
    if not isinstance(release_agent, str):
        raise StateError("release_agent must be a string")
    cgroups = saved.get("cgroups")
    if not isinstance(cgroups, list) or not cgroups:
        raise StateError(f"{h.label}: no cgroups")
    types_root = _state_types(h, h.root)
    decoded = []
    seen: set[str] = set()
    for entry in cgroups:
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
            raise StateError(f"{h.label}: bad cgroup entry")
        path = entry["path"]
        parts = [p for p in path.split("/") if p]
        if not path.startswith("/") or any(p in (".", "..") or "\0" in p or "\n" in p for p in parts):
            raise StateError(f"{h.label}: bad cgroup path {path!r}")
        parent = "/" + "/".join(parts[:-1])
        if parts and parent not in seen:
            raise StateError(f"{h.label}: {path} listed before its parent")
        if path in seen:
            raise StateError(f"{h.label}: {path} listed twice")
        seen.add(path)
        state = entry.get("state", {})
        if not isinstance(state, dict) or set(state) - set(types_root):
            raise StateError(f"{h.label}: {path}: state of unknown controllers")
        values = {name: decode(state[name], tp) for name, tp in types_root.items() if name in state}
        attrs = {}
        for pair in entry.get("attrs", []):
            if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], str)):
                raise StateError(f"{h.label}: {path}: bad attrs")
            attrs[pair[0]] = decode(pair[1], FileAttrs)
        decoded.append((parts, values, attrs))
    if decoded[0][0]:
        raise StateError(f"{h.label}: the first cgroup must be the top")
    placed = []
    for item in saved.get("placed", []):
        if not (isinstance(item, list) and len(item) == 3 and isinstance(item[0], int)
                and isinstance(item[1], str) and item[1] in seen):
            raise StateError(f"{h.label}: bad placement {item!r}")
        placed.append(item)
    return {"release_agent": release_agent, "cgroups": decoded, "placed": placed}


def _apply_hierarchy(h: Hierarchy, plan: dict) -> None:
    h.release_agent = plan["release_agent"]
    by_path: dict[str, Cgroup] = {}
    for parts, values, attrs in plan["cgroups"]:
        if not parts:
            cg = h.root
        else:
            parent = by_path["/" + "/".join(parts[:-1])]
            # Built directly: the saved values replace whatever mkdir would
            # have inherited, and names were valid when they were made.
            cg = h._new_cgroup(parts[-1], parent)
            parent.children[parts[-1]] = cg
        cg.state.update(values)
        cg.attrs = attrs
        by_path[cg.path] = cg
    procs = h.model.processes
    for tid, path, started in plan["placed"]:
        if not procs.exists(tid):
            continue  # gone while no daemon served
        if started is not None and procs.start_time_of(tid) != started:
            continue  # the tid now belongs to another process
        cg = by_path[path]
        if not cg.is_root:
            h.placed[tid] = cg


# -- the journal of acknowledged operations ---------------------------------------

def replay(model, records) -> tuple[int, list[str]]:
    """Bring a restored model forward by the operations journaled since its
    state was saved (CgroupModel.changed records), in order. Each is done
    again through the model's own rules; one that no longer applies (a
    process that is gone) is skipped. Returns how many were applied and what
    was skipped, one line each. The caller keeps the journal off meanwhile."""
    by_label = {m.hierarchy.label: m.hierarchy for m in model.mounts}
    applied, skipped = 0, []
    for record in records:
        try:
            _replay_one(by_label, record)
            applied += 1
        except (KernelError, KeyError, TypeError, ValueError, StateError) as exc:
            skipped.append(f"{record.get('op') if isinstance(record, dict) else record!r}: {exc}")
    return applied, skipped


def _replay_one(by_label: dict[str, Hierarchy], record: dict) -> None:
    h = by_label.get(record["h"])
    if h is None:
        raise StateError(f"no hierarchy {record['h']!r}")
    op = record["op"]
    cg = h.resolve(record["path"])
    if op == "mkdir":
        h.mkdir(cg, record["name"])
    elif op == "rmdir":
        h.rmdir(cg)
    elif op == "rename":
        h.rename(cg, cg.parent, record["name"])
    elif op == "write":
        tid, uid, gid = record["ctx"]
        h.write_file(cg, record["file"], record["data"].encode("latin-1"), WriteContext(tid=tid, uid=uid, gid=gid))
    elif op == "attrs":
        h.set_attrs(cg, record["file"], record["mode"], record["uid"], record["gid"], record.get("ctime"))
    elif op == "times":
        h.set_times(cg, record["file"], record["atime"], record["mtime"], record["ctime"])
    elif op == "xattr":
        value = record["value"]
        h.set_xattr(cg, record["file"], record["name"], None if value is None else value.encode("latin-1"))
    elif op == "attach":
        for tid in record["tids"]:
            if h.model.processes.exists(tid):
                h.attach(cg, tid, threadgroup=False)
    else:
        raise StateError(f"unknown operation {op!r}")

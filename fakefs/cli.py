"""The ``fakefs`` command line. Errors are one line on stderr and a non-zero
exit; no traceback reaches the user."""

from __future__ import annotations

import argparse
import json
import os
import sys

from . import __version__

DEFAULT_TARGET = "/sys/fs/cgroup"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fakefs", description="A kernel-exact fake cgroup v1 and /proc/sys filesystem.")
    p.add_argument("--version", action="version", version=f"fakefs {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    m = sub.add_parser("mount", help="mount a fake tree (default: cgroup v1 at /sys/fs/cgroup)")
    m.add_argument("target", nargs="?", default=DEFAULT_TARGET)
    m.add_argument("--backend", choices=["fuse"], default="fuse")
    m.add_argument("--tree", choices=["cgroup"], default="cgroup")
    m.add_argument("--hierarchy", action="append", dest="hierarchies", metavar="SPEC",
                   help="a hierarchy to serve, e.g. 'cpu,cpuacct' or 'name=systemd' (repeatable; "
                        "default: the systemd layout with every controller)")
    m.add_argument("--foreground", action="store_true", help="serve in this process until unmounted")
    m.add_argument("--in-place", action="store_true",
                   help="allow mounting over a system path in the host's mount namespace")

    u = sub.add_parser("umount", help="unmount a fake tree and stop its daemon")
    u.add_argument("target", nargs="?", default=DEFAULT_TARGET)

    s = sub.add_parser("status", help="what fakefs has mounted in this mount namespace")
    s.add_argument("--json", action="store_true")
    return p


def cmd_mount(args) -> int:
    from .daemon import MountRequest
    from .mounting import check_target, start
    from .model.errors import KernelError
    from .model.tree import parse_hierarchy_spec

    for spec in args.hierarchies or []:
        try:
            parse_hierarchy_spec(spec)
        except KernelError as exc:
            raise _cli_error(f"fakefs: {exc.detail}")
    target = check_target(args.target, args.in_place)
    return start(MountRequest(target=target, tree=args.tree, backend=args.backend,
                              hierarchies=args.hierarchies), foreground=args.foreground)


def cmd_umount(args) -> int:
    from .mounting import stop

    print(stop(args.target))
    return 0


def cmd_status(args) -> int:
    from . import registry
    from .mounting import is_stale

    rows = []
    for rec in registry.all_records():
        state = "running" if rec.alive and not is_stale(rec.target) else "stale"
        rows.append({"target": rec.target, "backend": rec.backend, "tree": rec.tree, "pid": rec.pid,
                     "state": state, "log": rec.log})
    if args.json:
        print(json.dumps({"mounts": rows}, indent=2))
    elif not rows:
        print("fakefs: nothing mounted")
    else:
        for r in rows:
            print(f"{r['target']}\t{r['tree']}\t{r['backend']}\tpid {r['pid']}\t{r['state']}")
    return 0


def _cli_error(message: str):
    from .mounting import CliError

    return CliError(message)


COMMANDS = {"mount": cmd_mount, "umount": cmd_umount, "status": cmd_status}


def main(argv: list[str] | None = None) -> int:
    from .mounting import CliError

    args = _parser().parse_args(argv)
    if not args.command:
        _parser().print_usage(sys.stderr)
        return 2
    try:
        return COMMANDS[args.command](args)
    except CliError as exc:
        print(str(exc), file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130
    except OSError as exc:
        print(f"fakefs: {exc.strerror or exc}{': ' + exc.filename if exc.filename else ''}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

"""The pure model: cgroup v1 hierarchies and /proc/sys values, no I/O.

Everything the kernel decides (formats, validation, errnos, hierarchy
rules) lives here, so that every backend (FUSE, tmpfs) serves the same
behaviour and tests can exercise it without mounting anything.
"""

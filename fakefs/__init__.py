"""fakefs: a synthetic cgroup v1 and /proc/sys filesystem for sandboxes."""

__version__ = "0.1.0"

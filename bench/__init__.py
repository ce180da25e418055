"""``make bench``: fakefs side by side with lxcfs, the real cgroupfs and tmpfs.

In one run and one private mount namespace it starts fakefs with each
backend (pyfuse3, fuse-raw, tmpfs) and lxcfs (Debian's package, on a scratch
directory), makes a throwaway child of the machine's real
``/sys/fs/cgroup/cpu`` and a tmpfs file, and measures the same operations on
each: open+read+close with 1 and 4 reader processes (ops/s, p50/p99),
open+write+close, mkdir+rmdir pairs, the time from invoking the mount to the
first successful read; then, per FUSE backend, a daemon with 10, 1,000 and
10,000 cgroups: its RSS, its read rate over every cgroup, and what listdir,
a live read and a stat of one cgroup cost. Each figure is the median of
several repetitions with min and max; results go to ``bench-results/`` as
JSON and a Markdown table, with the issue's targets and whether this run
met them, and the machine's load average.

Not a test: it never fails (missing pieces are reported and skipped).
"""

"""``make bench``: fakefs side by side with lxcfs, the real cgroupfs and tmpfs.

In one run and one private mount namespace it starts fakefs (the pyfuse3
backend) and lxcfs (Debian's package, on a scratch directory), makes a
throwaway child of the machine's real ``/sys/fs/cgroup/cpu`` and a tmpfs
file, and measures the same operations on each: open+read+close with 1 and 4
reader processes (ops/s, p50/p99), open+write+close, mkdir+rmdir pairs, the
time from invoking the mount to the first successful read, and the fakefs
daemon's RSS and read rate with 10, 1,000 and 10,000 cgroups. Each figure is
the median of several repetitions with min and max; results go to
``bench-results/`` as JSON and a Markdown table.

Not a test: it never fails (missing pieces are reported and skipped).
"""

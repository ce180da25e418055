"""perf_event controller (kernel/events/core.c ``perf_event_cgrp_subsys``).

It declares no legacy cftypes: a perf_event hierarchy holds only the core
files (cgroup.procs, tasks, ...). Measured on Linux 6.18 by mounting it in a
private mount namespace: the root lists exactly cgroup.clone_children,
cgroup.procs, cgroup.sane_behavior, notify_on_release, release_agent, tasks.
"""

from fakefs.model.cftype import Controller


class PerfEvent(Controller):
    name = "perf_event"
    files = ()


CONTROLLER = PerfEvent()

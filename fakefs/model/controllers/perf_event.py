"""perf_event controller (placeholder: core files only until its table is written)."""

from ..cftype import Controller


class PerfEvent(Controller):
    name = "perf_event"


CONTROLLER = PerfEvent()

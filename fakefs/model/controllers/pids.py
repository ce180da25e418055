"""pids controller (placeholder: core files only until its table is written)."""

from ..cftype import Controller


class Pids(Controller):
    name = "pids"


CONTROLLER = Pids()

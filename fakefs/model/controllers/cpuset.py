"""cpuset controller (placeholder: core files only until its table is written)."""

from ..cftype import Controller


class Cpuset(Controller):
    name = "cpuset"


CONTROLLER = Cpuset()

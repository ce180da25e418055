"""cpuacct controller (placeholder: core files only until its table is written)."""

from ..cftype import Controller


class Cpuacct(Controller):
    name = "cpuacct"


CONTROLLER = Cpuacct()

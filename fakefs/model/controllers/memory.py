"""memory controller (placeholder: core files only until its table is written)."""

from ..cftype import Controller


class Memory(Controller):
    name = "memory"


CONTROLLER = Memory()

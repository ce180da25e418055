"""freezer controller (placeholder: core files only until its table is written)."""

from ..cftype import Controller


class Freezer(Controller):
    name = "freezer"


CONTROLLER = Freezer()

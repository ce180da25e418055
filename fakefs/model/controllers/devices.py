"""devices controller (placeholder: core files only until its table is written)."""

from ..cftype import Controller


class Devices(Controller):
    name = "devices"


CONTROLLER = Devices()

"""blkio controller (placeholder: core files only until its table is written)."""

from ..cftype import Controller


class Blkio(Controller):
    name = "blkio"


CONTROLLER = Blkio()

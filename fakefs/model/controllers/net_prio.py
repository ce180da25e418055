"""net_prio controller (placeholder: core files only until its table is written)."""

from ..cftype import Controller


class NetPrio(Controller):
    name = "net_prio"


CONTROLLER = NetPrio()

"""net_cls controller (placeholder: core files only until its table is written)."""

from ..cftype import Controller


class NetCls(Controller):
    name = "net_cls"


CONTROLLER = NetCls()

"""rdma controller (placeholder: core files only until its table is written)."""

from ..cftype import Controller


class Rdma(Controller):
    name = "rdma"


CONTROLLER = Rdma()

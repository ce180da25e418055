"""hugetlb controller (placeholder: core files only until its table is written)."""

from ..cftype import Controller


class Hugetlb(Controller):
    name = "hugetlb"


CONTROLLER = Hugetlb()

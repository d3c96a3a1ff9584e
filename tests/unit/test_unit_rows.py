"""List rows compare by value: `xbctl top` redraws only when a row really changed."""

from xbctl.nodes import Balloon
from xbctl.operations import DomainRow
from xbctl.transports import Domain


def balloon(target_kib: int) -> Balloon:
    return Balloon(1024, target_kib, 256, 2048, 2048, 64)


def test_rows_with_the_same_values_are_equal():
    assert DomainRow(Domain(1, "web"), balloon(1024)) == DomainRow(Domain(1, "web"), balloon(1024))
    assert [DomainRow(Domain(2, "db"), None, "gone", "missing")] == [
        DomainRow(Domain(2, "db"), None, "gone", "missing")
    ]


def test_rows_that_differ_in_anything_are_not():
    row = DomainRow(Domain(1, "web"), balloon(1024))
    assert row != DomainRow(Domain(1, "web"), balloon(1000))
    assert row != DomainRow(Domain(1, "www"), balloon(1024))
    assert DomainRow(Domain(2, "db"), None, "gone", "missing") != DomainRow(Domain(2, "db"), None, "bad", "malformed")

"""Writing and reading control files through the model in tests, the way
a write(2) reaches the kernel: one buffer (text is taken as latin-1 bytes),
failures as the errno."""

from __future__ import annotations

import pytest

from fakefs.model.cftype import WriteContext
from fakefs.model.errors import KernelError


def write(h, cg, name: str, data: str | bytes, ctx: WriteContext = WriteContext()) -> int:
    raw = data.encode("latin-1") if isinstance(data, str) else data
    return h.write_file(cg, name, raw, ctx)


def write_errno(h, cg, name: str, data: str | bytes, ctx: WriteContext = WriteContext()) -> int:
    """The errno of a write that must fail."""
    with pytest.raises(KernelError) as exc:
        write(h, cg, name, data, ctx)
    return exc.value.errno


def read_errno(h, cg, name: str) -> int:
    """The errno of a read that must fail."""
    with pytest.raises(KernelError) as exc:
        h.read_file(cg, name)
    return exc.value.errno

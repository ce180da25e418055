"""Kernel-style errors raised by the model.

The model never touches the filesystem; it signals failures with the errno
the kernel would return, and the backends turn that into the reply.
"""

import errno as _errno


class KernelError(Exception):
    """A failure the kernel reports as ``-errno``."""

    def __init__(self, errno: int, detail: str = ""):
        super().__init__(errno, detail or _errno.errorcode.get(errno, str(errno)))
        self.errno = errno
        self.detail = detail

    def __repr__(self) -> str:
        return f"KernelError({_errno.errorcode.get(self.errno, self.errno)}, {self.detail!r})"


def einval(detail: str = "") -> KernelError:
    return KernelError(_errno.EINVAL, detail)

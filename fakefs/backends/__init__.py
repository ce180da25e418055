"""The transports that carry the operations layer to the kernel: pyfuse3
(``fuse``), the FUSE protocol spoken over /dev/fuse (``fuse-raw``), and plain
files in a tmpfs (``tmpfs``)."""

"""The ``fuse-raw`` transport: the FUSE kernel protocol spoken directly over
/dev/fuse (for kernels libfuse refuses, such as gVisor's), serving the same
:class:`~fakefs.vfs.ops.FsOps` as the pyfuse3 adapter."""

"""Filesystem layer: nodes over the model, the operations every backend
shares (``ops``), and the transports (pyfuse3) that carry them."""

"""Nodes over the model (cgroup trees, merged /proc/sys views) and the one
operations layer (``ops``) that holds every rule the transports share."""

"""The daemon's life: the serving loop, starting and stopping daemons, the
supervisor, and the files of the run directory (registry, state, journal)."""

"""The mount manager: profiles (TOML, shipped in fakefs/profiles/ or the
user's own) become a plan of mount steps that is printed (--dry-run), applied
in order and journaled so that it can be undone in reverse, even after the
daemons were killed."""

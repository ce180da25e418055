"""This machine: mount syscalls, mountinfo, host facts, /proc parsing, live
statistics and the fork watcher. Over the model; nothing above it."""

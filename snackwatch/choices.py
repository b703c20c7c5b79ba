"""Values the command line offers and the modules it configures accept, in a module that imports nothing."""

BACKENDS = ("auto", "inotify", "observer", "polling")  # watcher.py: "auto" is inotify on Linux, else observer
POLL_INTERVAL = 1.0  # seconds between the polling watcher's looks (and its full passes), unless --poll-interval

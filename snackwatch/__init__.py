"""snackwatch: an event-driven desired-state reconciler that keeps declared files in a directory."""

__version__ = "0.1.0"

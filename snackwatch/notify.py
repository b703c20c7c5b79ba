"""sd_notify on the stdlib: READY/STATUS/RELOADING/STOPPING/WATCHDOG to $NOTIFY_SOCKET, if any."""

from __future__ import annotations

import os
import socket
import time


class Notifier:
    """Sends systemd notifications; every method is a no-op outside a Type=notify service."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        if address.startswith("@"):  # abstract namespace socket
            address = "\0" + address[1:]
        self.address = address if address.startswith(("/", "\0")) else ""
        self.watchdog_interval = self._watchdog_interval(env)
        self._socket: socket.socket | None = None
        self._status = ""
        self._next_watchdog: float | None = None

    def start_watchdog(self, now: float) -> None:
        """Begin WATCHDOG=1 pings (from the loop, at half of WATCHDOG_USEC) if the service manager wants them."""
        if self.watchdog_interval is not None:
            self._next_watchdog = now

    def next_due(self) -> float | None:
        """When the next watchdog ping is due (None: no watchdog)."""
        return self._next_watchdog

    def tick(self, now: float) -> None:
        """Ping the watchdog if it is due: the loop is alive."""
        if self._next_watchdog is not None and self.watchdog_interval and now >= self._next_watchdog:
            self.watchdog()
            self._next_watchdog = now + self.watchdog_interval

    @staticmethod
    def _watchdog_interval(env: dict[str, str] | os._Environ[str]) -> float | None:
        """Half of WATCHDOG_USEC when it is meant for this process, else None."""
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        if not usec.isdigit() or int(usec) == 0 or (pid and pid != str(os.getpid())):
            return None
        return int(usec) / 1_000_000 / 2

    def send(self, message: str) -> bool:
        """Send one notification datagram; False if there is no socket or it failed."""
        if not self.address:
            return False
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._socket.sendto(message.encode(), self.address)
        except OSError:
            return False
        return True

    def ready(self, status: str) -> None:
        self._status = status
        self.send(f"READY=1\nSTATUS={status}")

    @property
    def wanted(self) -> bool:
        """Whether a service manager listens (else building a status line for it is wasted)."""
        return bool(self.address)

    def status(self, status: str) -> None:
        """Send STATUS= only when it changed since the last one."""
        if status != self._status:
            self._status = status
            self.send(f"STATUS={status}")

    def reloading(self) -> None:
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.send(f"RELOADING=1\nMONOTONIC_USEC={usec}")

    def stopping(self) -> None:
        self.send("STOPPING=1")

    def watchdog(self) -> None:
        self.send("WATCHDOG=1")

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None

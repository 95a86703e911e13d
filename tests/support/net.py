"""Loopback helpers for the tests and bench/: a free port, waiting for an HTTP answer."""

from __future__ import annotations

import socket
import time
import urllib.request
from collections.abc import Callable


def free_port() -> int:
    """A port nothing listens on now (the kernel's pick), for a server about to bind it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, timeout: float = 90.0, alive: Callable[[], bool] | None = None) -> None:
    """Return once ``url`` answers 200; ``alive`` (the server's process) ends the wait early.

    Without ``alive`` a server that died at start would only show as a timeout,
    ``timeout`` seconds later and without its reason.
    """
    deadline = time.monotonic() + timeout
    while True:
        if alive is not None and not alive():
            raise RuntimeError(f"the server behind {url} exited before it answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer within {timeout} s")
        time.sleep(0.5)

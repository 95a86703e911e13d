"""Real HTTP servers inside the test process, each serving from a daemon thread until
the test that started it ends: stand-ins for a gateway or a predictor that answer
the way a test needs."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from socketserver import BaseServer
from typing import TypeVar

Server = TypeVar("Server", bound=BaseServer)


class RunningServers:
    """The servers started with ``start``; ``close`` shuts them all down."""

    def __init__(self) -> None:
        self._started: list[BaseServer] = []

    def start(self, server: Server) -> Server:
        """Serve ``server`` (bound already) from a daemon thread; returns it."""
        # a short poll interval: shutdown() waits for the loop to look again
        threading.Thread(
            target=server.serve_forever, args=(0.05,), name="test-http-server", daemon=True
        ).start()
        self._started.append(server)
        return server

    def close(self) -> None:
        for server in self._started:
            server.shutdown()
            server.server_close()
        self._started.clear()


@contextlib.contextmanager
def running_servers() -> Iterator[RunningServers]:
    """Servers to start inside the ``with``, all stopped when it ends.

    A fixture yields from inside the ``with``: the servers stop at its teardown,
    whether the test passed or not.
    """
    servers = RunningServers()
    try:
        yield servers
    finally:
        servers.close()

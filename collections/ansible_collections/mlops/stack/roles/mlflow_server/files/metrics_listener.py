"""Serve the MLflow server's Prometheus metrics on a listener of their own.

MLflow's basic-auth app answers /metrics to admins only, and the admin
password stays on the MLflow host. This listener reads the folder the
server's workers write their metrics to (`mlflow server --expose-prometheus
DIR`, PROMETHEUS_MULTIPROC_DIR here) and serves only those metrics: no
registry data, no account needed.

usage: python metrics_listener.py ADDRESS PORT
"""

import os
import sys
import threading

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.multiprocess import MultiProcessCollector


def main() -> None:
    address, port = sys.argv[1], int(sys.argv[2])
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=os.environ["PROMETHEUS_MULTIPROC_DIR"])
    server, thread = start_http_server(port, addr=address, registry=registry)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.shutdown()
        thread.join()


if __name__ == "__main__":
    main()

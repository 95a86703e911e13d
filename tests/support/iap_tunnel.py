"""Stand-in for `gcloud compute start-iap-tunnel INSTANCE PORT
--listen-on-stdin --zone=ZONE --project=PROJECT`, as an SSH ProxyCommand runs
it: relays stdin/stdout to the SSH port of the lab node that plays INSTANCE.

The table (JSON, path in IAP_STANDIN_TABLE) maps instance names to
{"port": loopback SSH port, "zone": ..., "project": ...}; a tunnel to an
unknown instance, or in another zone or project, fails as IAP would. Every
tunnel is logged ("INSTANCE PORT") to IAP_STANDIN_LOG. Standard library only.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
from pathlib import Path


def relay_out(sock: socket.socket) -> None:
    while data := sock.recv(65536):
        os.write(1, data)
    os.close(1)


def main(args: list[str]) -> int:
    if args[:2] != ["compute", "start-iap-tunnel"] or "--listen-on-stdin" not in args:
        print(f"iap stand-in: unexpected arguments {args}", file=sys.stderr)
        return 2
    instance, port = args[2], args[3]
    options = dict(a[2:].split("=", 1) for a in args[4:] if a.startswith("--") and "=" in a)
    table = json.loads(Path(os.environ["IAP_STANDIN_TABLE"]).read_text())
    entry = table.get(instance)
    if entry is None:
        print(f"ERROR: instance {instance} not found", file=sys.stderr)
        return 1
    for key in ("zone", "project"):
        if options.get(key) != entry[key]:
            print(f"ERROR: {instance} is not in {key} {options.get(key)}", file=sys.stderr)
            return 1
    with Path(os.environ["IAP_STANDIN_LOG"]).open("a") as log:
        log.write(f"{instance} {port}\n")
    sock = socket.create_connection(("127.0.0.1", int(entry["port"])))
    answers = threading.Thread(target=relay_out, args=(sock,), daemon=True)
    answers.start()
    while data := os.read(0, 65536):
        sock.sendall(data)
    sock.shutdown(socket.SHUT_WR)
    answers.join(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

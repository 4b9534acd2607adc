"""moto's server in a child process: `python -m relay_local.moto_process --port 0`.

Why a process of its own: moto is pure Python, so in the same process as the handlers it competes
with them for one interpreter lock; in a child it gets a core of its own, and each local stack
gets its own state (moto's backends are global to a process). The child prints
``READY <port>`` once it listens and exits when its parent closes its stdin.
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import threading
from typing import Any


class MotoProcess:
    """Handle of a moto server running in a child process (``stop()`` ends it)."""

    def __init__(self, port: int = 0) -> None:
        self._process = subprocess.Popen(  # noqa: S603 - our own module, fixed arguments
            [sys.executable, "-m", "relay_local.moto_process", "--port", str(port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._process.stdout is not None
        line = self._process.stdout.readline().strip()
        if not line.startswith("READY "):
            self._process.kill()
            raise RuntimeError(f"moto server did not start (said {line!r})")
        self.port = int(line.split()[1])

    def get_host_and_port(self) -> tuple[str, int]:
        return "127.0.0.1", self.port

    def stop(self) -> None:
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()


def serve(port: int) -> None:
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    from relay_local import moto_patches
    from relay_local.aws import DynamoDBLock

    moto_patches.apply()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    app: Any = DynamoDBLock(DomainDispatcherApplication(create_backend_app))
    server = make_server("127.0.0.1", port, app, True, request_handler=MotoRequestHandler)
    print(f"READY {server.server_port}", flush=True)

    def exit_with_parent() -> None:
        sys.stdin.read()  # returns when the parent closes our stdin or dies
        server.shutdown()

    threading.Thread(target=exit_with_parent, daemon=True).start()
    server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    serve(parser.parse_args().port)


if __name__ == "__main__":
    main()

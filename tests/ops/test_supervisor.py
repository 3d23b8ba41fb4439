"""The supervisor's own rules, on small real processes."""

import io
import os
import signal
import socket
import subprocess
import sys
import time

import psutil
import pytest

from apps.ops.supervisor import AlreadyRunning, Supervisor, run_lock
from tests.conftest import REPO


def test_a_crashed_child_is_restarted_with_growing_pauses_and_a_log_line(tmp_path):
    out = io.StringIO()
    supervisor = Supervisor(out=out, backoff_first_s=0.2, backoff_max_s=0.4, stop_timeout_s=2)
    exits = []
    child = supervisor.start(
        "crasher", [sys.executable, "-c", "raise SystemExit(3)"], dict(os.environ),
        on_exit=lambda process, code: exits.append(code),
    )  # fmt: skip
    deadline = time.monotonic() + 20
    while child.restarts < 3 and time.monotonic() < deadline:
        supervisor.check_children()
        time.sleep(0.05)
    supervisor.stop_all()
    log = out.getvalue()
    assert child.restarts >= 3 and exits[:3] == [3, 3, 3]
    assert "crasher exited with status 3" in log
    assert "restarting it in 0 s (restart #1)" in log  # 0.2 s, rounded in the log
    assert child.quick_crashes >= 3  # the pause grew, capped at backoff_max_s
    assert "crasher started again" in log


SUPERVISOR_SCRIPT = """
import os, sys, time
from apps.ops.supervisor import Supervisor
supervisor = Supervisor(lifeline=sys.argv[1])
child = supervisor.start("sleeper", [sys.executable, "-c", "import time; time.sleep(120)"],
                         dict(os.environ))
print(child.popen.pid, flush=True)
time.sleep(120)
"""


@pytest.mark.parametrize("lifeline", ["pdeathsig", "pipe"])
def test_children_die_with_a_killed_supervisor(lifeline):
    supervisor = subprocess.Popen(
        [sys.executable, "-c", SUPERVISOR_SCRIPT, lifeline],
        cwd=REPO, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    child = psutil.Process(int(supervisor.stdout.readline()))
    family = [child, *child.children(recursive=True)]
    time.sleep(0.5)
    assert all(p.is_running() for p in family)
    supervisor.send_signal(signal.SIGKILL)
    supervisor.wait()
    gone, alive = psutil.wait_procs(family, timeout=10)
    assert alive == [], f"orphans left: {alive}"


ACCEPT_ONCE = """
import socket, sys
listener = socket.socket(fileno=int(sys.argv[1]))
connection, _ = listener.accept()
connection.sendall(b"hello")
connection.close()
"""


@pytest.mark.parametrize("lifeline", ["pdeathsig", "pipe"])
def test_a_shared_listening_socket_reaches_the_child(lifeline):
    """What `runportal --web-processes` relies on, with either lifeline (the pipe one runs the
    child under a wrapper that must pass the socket on)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.set_inheritable(True)
    supervisor = Supervisor(out=io.StringIO(), lifeline=lifeline, stop_timeout_s=2)
    try:
        supervisor.start(
            "acceptor", [sys.executable, "-c", ACCEPT_ONCE, str(listener.fileno())],
            dict(os.environ), pass_fds=(listener.fileno(),),
        )  # fmt: skip
        with socket.create_connection(listener.getsockname(), timeout=20) as connection:
            connection.settimeout(20)
            assert connection.recv(5) == b"hello"
    finally:
        supervisor.stop_all()
        listener.close()


def test_one_supervisor_per_var_dir(tmp_path):
    lock = tmp_path / "runportal.lock"
    with run_lock(lock):
        holder = subprocess.run(
            [sys.executable, "-c",
             "import sys; from pathlib import Path; from apps.ops.supervisor import run_lock\n"
             "with run_lock(Path(sys.argv[1])): pass", str(lock)],
            cwd=REPO, capture_output=True, text=True,
        )  # fmt: skip
        assert holder.returncode != 0
        assert f"ilportal is already running on {tmp_path} (supervisor pid {os.getpid()})" in (
            holder.stderr
        )
    with run_lock(lock):  # released: the next one gets it
        pass
    with pytest.raises(AlreadyRunning), run_lock(lock), run_lock(lock):
        pass

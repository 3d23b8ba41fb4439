"""A small process supervisor for `manage.py runportal`: start, prefix output, stop all together.

Each child gets its own process group, so a stop reaches its children too (Celery's pool
processes) and Ctrl-C in the terminal is handled here once, in order, not by every child.
"""

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field


@dataclass
class ManagedProcess:
    name: str
    command: list[str]
    env: dict[str, str] = field(default_factory=dict)
    popen: subprocess.Popen | None = None


class Supervisor:
    def __init__(self, stop_timeout_s: float = 20, out=sys.stdout):
        self.processes: list[ManagedProcess] = []
        self.stop_timeout_s = stop_timeout_s
        self.out = out
        self._stop_requested = threading.Event()
        self._print_lock = threading.Lock()

    def say(self, name: str, line: str) -> None:
        with self._print_lock:
            self.out.write(f"{name:>14} | {line}\n")
            self.out.flush()

    def start(self, name: str, command: list[str], env: dict[str, str]) -> ManagedProcess:
        process = ManagedProcess(name=name, command=command, env=env)
        process.popen = subprocess.Popen(
            command,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            text=True,
            bufsize=1,
        )
        threading.Thread(target=self._relay, args=(process,), daemon=True).start()
        self.processes.append(process)
        return process

    def adopt(self, name: str, popen: subprocess.Popen) -> None:
        """Supervise a process started elsewhere (the embedded Redis)."""
        self.processes.append(ManagedProcess(name=name, command=list(popen.args), popen=popen))

    def _relay(self, process: ManagedProcess) -> None:
        for line in process.popen.stdout:
            self.say(process.name, line.rstrip())

    def request_stop(self, *_args) -> None:
        self._stop_requested.set()

    def wait(self) -> int:
        """Waits for a stop request or a child exit, then stops all; returns the exit code."""
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, self.request_stop)
        exit_code = 0
        while not self._stop_requested.wait(0.5):
            dead = [p for p in self.processes if p.popen.poll() is not None]
            if dead:
                for p in dead:
                    self.say("runportal", f"{p.name} exited with status {p.popen.returncode}")
                exit_code = 1
                break
        self.stop_all()
        return exit_code

    def stop_all(self) -> None:
        """Stops in reverse start order, so Redis outlives the processes that use it."""
        for process in reversed(self.processes):
            self._stop(process)

    def _stop(self, process: ManagedProcess) -> None:
        popen = process.popen
        if popen.poll() is None:
            self.say("runportal", f"stopping {process.name}")
            _signal_group(popen.pid, signal.SIGTERM)
            try:
                popen.wait(timeout=self.stop_timeout_s)
            except subprocess.TimeoutExpired:
                self.say("runportal", f"{process.name} did not stop; killing it")
        # Whatever is left in the group (pool children, a hung process) goes now.
        _signal_group(popen.pid, signal.SIGKILL)
        popen.wait()


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def wait_for_http(url: str, timeout_s: float, is_alive) -> bool:
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and is_alive():
        try:
            with urllib.request.urlopen(url, timeout=2):
                return True
        except urllib.error.HTTPError:
            return True  # it answered, even if not 200
        except OSError:
            time.sleep(0.25)
    return False

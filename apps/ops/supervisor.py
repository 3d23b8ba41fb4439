"""A small process supervisor for `manage.py runportal`: start, prefix output, restart, stop.

- Each child gets its own process group, so a stop reaches its children too (Celery's pool
  processes) and Ctrl-C in the terminal is handled here once, in order, not by every child.
- A child that exits by itself is started again after a pause that doubles with each quick crash
  (1 s, 2 s, 4 s … at most 30 s), with a line in the log; the portal stops only when asked.
- Children die with their supervisor, even a `kill -9`-ed one: on Linux through the kernel's
  parent-death signal (prctl PR_SET_PDEATHSIG); elsewhere each child runs under `lifeline`, which
  watches a pipe from the supervisor and stops the child when the pipe closes.
- `run_lock` keeps a second supervisor off the same var/.

No Django here.
"""

import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from worker.ml.parent_death import die_with_parent, pdeathsig_supported


@dataclass
class ManagedProcess:
    name: str
    command: list[str]
    env: dict[str, str] | None = None
    popen: subprocess.Popen | None = None
    on_exit: Callable[["ManagedProcess", int], None] | None = None
    started_at: float = 0.0
    restarts: int = 0
    quick_crashes: int = 0
    restart_at: float | None = None
    relay: bool = True
    extra: dict = field(default_factory=dict)
    pass_fds: tuple[int, ...] = ()  # open files the child inherits (a shared listening socket)


class AlreadyRunning(RuntimeError):
    pass


@contextlib.contextmanager
def run_lock(path: Path):
    """Holds an exclusive lock on `path` for the supervisor's lifetime; the kernel releases it
    when the process ends, however it ends, so a stale file never blocks a start."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+")  # noqa: SIM115 (held until the context ends)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise AlreadyRunning(
                f"ilportal is already running on {path.parent} (supervisor pid {holder}). "
                "Stop it first (Ctrl-C in its terminal, or kill that pid)."
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield
    finally:
        handle.close()


class Supervisor:
    def __init__(
        self,
        stop_timeout_s: float = 20,
        out=sys.stdout,
        *,
        backoff_first_s: float = 1,
        backoff_max_s: float = 30,
        stable_after_s: float = 60,
        lifeline: str = "auto",
    ):
        self.processes: list[ManagedProcess] = []
        self.stop_timeout_s = stop_timeout_s
        self.out = out
        self.backoff_first_s, self.backoff_max_s = backoff_first_s, backoff_max_s
        self.stable_after_s = stable_after_s
        if lifeline == "auto":
            lifeline = "pdeathsig" if pdeathsig_supported() else "pipe"
        self.lifeline = lifeline
        self._stop_requested = threading.Event()
        self._print_lock = threading.Lock()

    def say(self, name: str, line: str) -> None:
        with self._print_lock:
            self.out.write(f"{name:>14} | {line}\n")
            self.out.flush()

    def start(
        self,
        name: str,
        command: list[str],
        env: dict[str, str],
        on_exit: Callable[[ManagedProcess, int], None] | None = None,
        pass_fds: tuple[int, ...] = (),
    ) -> ManagedProcess:
        process = ManagedProcess(
            name=name, command=command, env=env, on_exit=on_exit, pass_fds=pass_fds
        )
        self._spawn(process)
        self.processes.append(process)
        return process

    def _spawn(self, process: ManagedProcess) -> None:
        """Called from the main thread only: the parent-death signal follows the thread that
        forked, so a child started from a short-lived thread would die with that thread."""
        command = process.command
        options = {}
        if self.lifeline == "pdeathsig":
            options["preexec_fn"] = die_with_parent()
        else:
            command = [sys.executable, "-m", "apps.ops.lifeline", *command]
        process.popen = subprocess.Popen(
            command,
            env=process.env,
            stdout=subprocess.PIPE if process.relay else None,
            stderr=subprocess.STDOUT if process.relay else None,
            stdin=subprocess.PIPE if self.lifeline == "pipe" else subprocess.DEVNULL,
            text=True,
            bufsize=1,
            start_new_session=True,
            pass_fds=process.pass_fds,
            **options,
        )
        process.started_at = time.monotonic()
        process.restart_at = None
        if process.relay:
            threading.Thread(
                target=self._relay, args=(process.popen, process.name), daemon=True
            ).start()

    def adopt(
        self, name: str, popen: subprocess.Popen, restart: Callable[[], subprocess.Popen] | None
    ) -> None:
        """Supervise a process started elsewhere (the embedded Redis); `restart` starts it again."""
        process = ManagedProcess(name=name, command=list(popen.args), popen=popen, relay=False)
        process.started_at = time.monotonic()
        process.extra["restart"] = restart
        self.processes.append(process)

    def _relay(self, popen: subprocess.Popen, name: str) -> None:
        for line in popen.stdout:
            self.say(name, line.rstrip())

    def request_stop(self, *_args) -> None:
        self._stop_requested.set()

    def wait(self) -> int:
        """Keeps the children running until a stop request, then stops all; returns 0."""
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, self.request_stop)
        while not self._stop_requested.wait(0.25):
            self.check_children()
        self.stop_all()
        return 0

    def check_children(self) -> None:
        """One pass: notice exits, and start again what is due."""
        now = time.monotonic()
        for process in self.processes:
            if process.restart_at is not None:
                if now >= process.restart_at and not self._stop_requested.is_set():
                    try:
                        self._restart(process)
                    except Exception as exc:  # cannot start now (port, binary): try again later
                        process.quick_crashes += 1
                        process.restart_at = now + self.backoff_max_s
                        self.say(
                            "runportal",
                            f"starting {process.name} failed: {exc!r}; "
                            f"trying again in {self.backoff_max_s:.0f} s",
                        )
                continue
            code = process.popen.poll()
            if code is None:
                continue
            ran_s = now - process.started_at
            process.quick_crashes = 0 if ran_s >= self.stable_after_s else process.quick_crashes + 1
            delay = min(
                self.backoff_first_s * 2 ** max(process.quick_crashes - 1, 0), self.backoff_max_s
            )
            process.restart_at = now + delay
            self.say(
                "runportal",
                f"{process.name} exited with status {code} after {ran_s:.0f} s; "
                f"restarting it in {delay:.0f} s (restart #{process.restarts + 1})",
            )
            if process.on_exit is not None:
                try:
                    process.on_exit(process, code)
                except Exception as exc:  # the supervisor itself must not fall over
                    self.say("runportal", f"after {process.name} exited: {exc!r}")

    def _restart(self, process: ManagedProcess) -> None:
        process.restarts += 1
        restart = process.extra.get("restart")
        if restart is not None:
            process.popen = restart()
            process.started_at, process.restart_at = time.monotonic(), None
        else:
            self._spawn(process)
        self.say("runportal", f"{process.name} started again (pid {process.popen.pid})")

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
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def wait_for_http(url: str, timeout_s: float, is_alive, run_id: str | None = None) -> bool:
    """Waits until `url` answers; with `run_id`, until it answers as this run's web process
    (its JSON carries the same run_id), so an old process on the port does not count."""
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and is_alive():
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                body = response.read()
        except urllib.error.HTTPError as error:
            body = error.read()  # it answered, even if not 200 (workers still starting)
        except OSError:
            time.sleep(0.25)
            continue
        if run_id is None or _run_id_of(body) == run_id:
            return True
        time.sleep(0.25)
    return False


def _run_id_of(body: bytes) -> str | None:
    try:
        return json.loads(body).get("run_id")
    except (ValueError, AttributeError):
        return None

"""`python -m apps.ops.lifeline COMMAND…`: runs COMMAND and stops it when stdin closes.

Where the kernel has no parent-death signal (macOS, BSD), the supervisor starts each child under
this wrapper with a pipe on its stdin. The supervisor never writes to it; when the supervisor dies,
however it dies, the kernel closes the pipe, this wrapper reads EOF and stops its child's group.
No Django here.
"""

import contextlib
import os
import signal
import subprocess
import sys
import threading


def main(command: list[str]) -> int:
    # The child stays in this wrapper's process group: the supervisor's signals to the group
    # reach both, and this wrapper only has to outlive its child.
    # close_fds=False: the files the supervisor passed on (a shared listening socket) reach the
    # child; nothing else of this wrapper is inheritable.
    child = subprocess.Popen(command, stdin=subprocess.DEVNULL, close_fds=False)

    def watch_the_pipe():
        while sys.stdin.buffer.read(4096):
            pass
        os.killpg(os.getpgrp(), signal.SIGKILL)  # the supervisor is gone: the group goes too

    threading.Thread(target=watch_the_pipe, daemon=True).start()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda number, _frame: _forward(child, number))
    return child.wait()


def _forward(child: subprocess.Popen, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        child.send_signal(sig)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

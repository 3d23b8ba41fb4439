"""Child processes that die with the process that started them, even a `kill -9`-ed one.

Linux: the kernel's parent-death signal (prctl PR_SET_PDEATHSIG), set in the child before it
runs its program. Elsewhere `die_with_parent()` is None (a harmless no-op as a preexec_fn).
Standard library only: the supervisor, the worker's smoke tests and the LiteRT converter use it.
"""

import ctypes
import os
import signal
import sys
from collections.abc import Callable

PR_SET_PDEATHSIG = 1


def pdeathsig_supported() -> bool:
    return sys.platform.startswith("linux")


# Resolved before any fork: the child of a threaded parent should call, not load, code.
_prctl = ctypes.CDLL(None, use_errno=True).prctl if pdeathsig_supported() else None


def die_with_parent(sig: int = signal.SIGKILL) -> Callable[[], None] | None:
    """A preexec_fn: the child gets `sig` when the process that started it dies (Linux; None
    elsewhere). SIGKILL: a parent that was killed cannot stop its children in order."""
    if _prctl is None:
        return None
    parent = os.getpid()

    def preexec():
        _prctl(PR_SET_PDEATHSIG, sig)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec

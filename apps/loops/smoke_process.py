"""Smoke tests run in a child process: a model that crashes its loader takes only the child down."""

import json
import subprocess
import sys

from django.conf import settings

from worker.ml.parent_death import die_with_parent

SMOKE_TEST_TIMEOUT_S = 300


def run_smoke_process(module: str, *args: str) -> dict:
    """Runs `python -m module args` in a new process (a broken model cannot take this one down)
    and returns the JSON report it prints last; `passed` is false if it failed or printed none.
    The child dies with this worker process, even a kill -9-ed one (no orphan smoke test)."""
    completed = subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        timeout=SMOKE_TEST_TIMEOUT_S,
        cwd=settings.BASE_DIR,
        preexec_fn=die_with_parent(),
    )
    lines = completed.stdout.strip().splitlines()
    try:
        report = json.loads(lines[-1])
    except (IndexError, ValueError):
        report = {"passed": False, "problems": [completed.stderr.strip()[-500:] or "no output"]}
    if completed.returncode != 0:
        report["passed"] = False
    return report

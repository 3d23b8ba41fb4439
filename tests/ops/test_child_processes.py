"""The processes a job starts (smoke test, LiteRT conversion) die with a kill -9-ed worker."""

import os
import subprocess
import sys
import time

import psutil
import pytest

from tests.conftest import REPO
from worker.ml.parent_death import pdeathsig_supported

# A "worker" that starts the child as the job would; `sys.executable` is a stand-in that writes
# its pid and sleeps, so the child is cheap and known.
WORKER_SCRIPT = {
    "smoke test": "from apps.loops.smoke_process import run_smoke_process\n"
    "run_smoke_process('worker.ml.smoke', 'model.zip')",
    "LiteRT conversion": "from worker.ml.litert import convert_keras_file\n"
    "convert_keras_file('model.keras', sys.argv[2])",
}


@pytest.mark.skipif(not pdeathsig_supported(), reason="the parent-death signal is Linux's")
@pytest.mark.parametrize("child", WORKER_SCRIPT)
def test_a_killed_worker_leaves_no_orphan_child(tmp_path, child):
    pid_file = tmp_path / "child.pid"
    stand_in = tmp_path / "python"
    stand_in.write_text(f"#!/bin/sh\necho $$ > {pid_file}\nexec sleep 120\n")
    stand_in.chmod(0o755)
    worker = subprocess.Popen(
        [sys.executable, "-c", f"import sys\nsys.executable = sys.argv[1]\n{WORKER_SCRIPT[child]}",
         str(stand_in), str(tmp_path / "model.tflite")],
        cwd=REPO, env={**os.environ, "DJANGO_SETTINGS_MODULE": "ilportal.settings_test"},
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not pid_file.exists() or not pid_file.read_text().strip():
        assert worker.poll() is None and time.monotonic() < deadline, "no child started"
        time.sleep(0.1)
    orphan = psutil.Process(int(pid_file.read_text()))
    try:
        worker.kill()
        worker.wait()
        gone, alive = psutil.wait_procs([orphan], timeout=10)
        assert alive == [], f"{child} left running: {alive}"
    finally:
        if orphan.is_running():
            orphan.kill()

"""The supervisor under kill -9: it restarts what crashed, its children die with it, one runs per
var/, and the jobs of a dead worker are marked lost at once."""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import psutil
import pytest

from tests.conftest import REPO, free_port

pytestmark = pytest.mark.slow


def _healthz(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=3) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())
    except OSError:
        return None, None


def _wait(condition, timeout_s, what, log=None):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.3)
    tail = log.read_text()[-5000:] if log else ""
    pytest.fail(f"{what} not within {timeout_s} s\n{tail}")


class Portal:
    def __init__(self, tmp_path, env, port, name, *options):
        self.log = tmp_path / f"{name}.log"
        self.port = port
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "runportal", "--port", str(port), "--no-demo",
             "--stop-timeout", "5", *options],
            cwd=REPO, env=env, stdout=self.log.open("w"), stderr=subprocess.STDOUT,
        )  # fmt: skip

    def healthy(self):
        status, report = _healthz(self.port)
        return report if status == 200 else None

    def text(self):
        return self.log.read_text()


def _manage(env, code):
    done = subprocess.run(
        [sys.executable, "manage.py", "shell", "--no-imports", "-c", code],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def _job(env, job_id):
    return json.loads(
        _manage(
            env,
            "import json; from apps.jobs.models import Job; "
            f"j = Job.objects.get(pk={job_id}); print(json.dumps([j.status, j.message, j.worker]))",
        )
    )


def test_crashes_restarts_orphans_and_a_second_run(tmp_path):
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"REDIS_URL", "DATABASE_URL", "REDIS_KEY_PREFIX", "ILPORTAL_TEST_DB_NAME"}
    }
    env.update({"VAR_DIR": str(tmp_path / "var"), "DJANGO_SETTINGS_MODULE": "ilportal.settings",
                "WORKER_HEARTBEAT_INTERVAL_S": "1", "WORKER_HEARTBEAT_MAX_AGE_S": "5"})  # fmt: skip
    port = free_port()
    first = Portal(tmp_path, env, port, "first")
    try:
        report = _wait(first.healthy, 120, "the portal serving", first.log)
        run_id = report["run_id"]

        # A second supervisor on the same var/ refuses, and leaves the first alone.
        second = Portal(tmp_path, env, free_port(), "second")
        assert second.process.wait(timeout=60) != 0
        assert "ilportal is already running on" in second.text()
        assert first.process.poll() is None

        # kill -9 of the default worker's main process mid-job: the job is lost at once, the
        # worker comes back by itself, the portal never stopped.
        job_id = int(
            _manage(
                env,
                "from apps.jobs.services import start_job; "
                "print(start_job('system_check', params={'step_delay_s': 30}).pk)",
            )
        )
        _wait(lambda: _job(env, job_id)[0] == "running", 60, "the job running", first.log)
        workers = [
            p for p in psutil.Process(first.process.pid).children()
            if "default@%h" in " ".join(p.cmdline())
        ]  # fmt: skip
        assert len(workers) == 1
        killed_at = time.monotonic()
        workers[0].kill()
        status, message, _ = _wait(
            lambda: (job := _job(env, job_id))[0] != "running" and job, 30, "job lost", first.log
        )
        assert status == "failed" and message.startswith("lost: its worker died"), message
        assert time.monotonic() - killed_at < 30  # not the 120 s reaper
        _wait(lambda: "worker-default started again" in first.text(), 30, "restart", first.log)
        assert "worker-default exited with status -9" in first.text()
        _wait(first.healthy, 90, "healthy again after the restart", first.log)
        assert first.process.poll() is None

        # kill -9 of the train worker's main process: it comes back, nothing else stops.
        [train] = [
            p for p in psutil.Process(first.process.pid).children()
            if "train@%h" in " ".join(p.cmdline())
        ]  # fmt: skip
        train.kill()
        _wait(lambda: "worker-train started again" in first.text(), 30, "restart", first.log)
        assert "stopping web" not in first.text()
        _wait(first.healthy, 90, "healthy again after the train worker's restart", first.log)

        # kill -9 of the supervisor: every child dies with it.
        children = psutil.Process(first.process.pid).children(recursive=True)
        assert len(children) >= 5
        first.process.kill()
        first.process.wait()
        _wait(
            lambda: not [c for c in children if c.is_running() and c.status() != "zombie"],
            20, "the orphans gone",
        )  # fmt: skip

        # The next run starts on the same var/ and port, and its probe sees its own web process.
        third = Portal(tmp_path, env, port, "third")
        try:
            report = _wait(third.healthy, 120, "the next run serving", third.log)
            assert report["run_id"] != run_id
            assert "ilportal is running at" in third.text()
        finally:
            third.process.send_signal(signal.SIGINT)
            assert third.process.wait(timeout=60) == 0
    finally:
        if first.process.poll() is None:
            first.process.send_signal(signal.SIGINT)
            first.process.wait(timeout=60)

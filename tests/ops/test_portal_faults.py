"""The whole portal (runportal) on its own Redis server, under faults: Redis restarted empty while
a job runs, a message that Redis lost, a frozen worker, unwritable storage. After each the portal
serves again by itself, no job stays running or queued, and /healthz said 503 meanwhile."""

import contextlib
import os
import signal
import subprocess
import time

import psutil
import pytest

from tests.conftest import free_port
from tests.ops.conftest import unwritable
from tests.ops.test_supervisor_faults import Portal, _healthz, _job, _manage, _wait

pytestmark = pytest.mark.slow


class OwnRedis:
    """A redis-server of this test only (never the shared one), restartable empty."""

    def __init__(self, tmp_path):
        from ilportal.embedded_redis import redis_server_binary

        self.binary, self.port, self.dir = redis_server_binary(), free_port(), tmp_path
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = None
        self.start()

    def start(self):
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.dir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        _wait(lambda: _pong(self.port), 10, "own redis up")

    def stop(self):
        self.process.kill()
        self.process.wait()


def _pong(port):
    import redis

    try:
        return redis.Redis(port=port, socket_timeout=1).ping()
    except redis.RedisError:
        return False


def _start_system_checks(env, *step_delays_s):
    code = (
        "from apps.jobs.services import start_job; print(' '.join(str(start_job("
        f"'system_check', params={{'step_delay_s': d}}).pk) for d in {step_delays_s!r}))"
    )
    ids = _manage(env, code)
    return [int(i) for i in ids.split()]


def _status(tmp_path, job_id):
    """Read straight from the SQLite file: quicker than a manage.py process, so the outage
    starts right when the job is seen running."""
    import sqlite3

    with contextlib.closing(sqlite3.connect(tmp_path / "var" / "db.sqlite3", timeout=5)) as db:
        row = db.execute("SELECT status FROM jobs_job WHERE id = ?", (job_id,)).fetchone()
    return row[0] if row else None


def test_redis_restart_lost_messages_frozen_worker_and_unwritable_storage(tmp_path):
    own_redis = OwnRedis(tmp_path)
    media = tmp_path / "media"
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "ILPORTAL_TEST_DB_NAME"}
    }
    env.update({
        "VAR_DIR": str(tmp_path / "var"), "DJANGO_SETTINGS_MODULE": "ilportal.settings",
        "REDIS_URL": own_redis.url, "REDIS_KEY_PREFIX": "faults", "MEDIA_ROOT": str(media),
        "WORKER_HEARTBEAT_INTERVAL_S": "1", "WORKER_HEARTBEAT_MAX_AGE_S": "4",
        "JOB_QUEUED_RESEND_AFTER_S": "3", "JOB_RECONCILE_INTERVAL_S": "2",
        "HEALTH_STORAGE_PROBE_CACHE_S": "0.5",
    })  # fmt: skip
    port = free_port()
    portal = Portal(tmp_path, env, port, "portal", "--default-concurrency", "1")
    try:
        _wait(portal.healthy, 120, "the portal serving", portal.log)

        # 1. Redis restarted empty while a job runs, with a second job waiting behind it.
        # Its steps start at 0, 8, 16 (the broker round trip: Redis must be back) and 24 s; the
        # outage (8.5 s from when it is seen running) always covers the broadcast at 8 s.
        running, *waiting = _start_system_checks(env, 8, 0, 0)
        _wait(lambda: _status(tmp_path, running) == "running", 60, "job running", portal.log)
        own_redis.stop()
        assert _healthz(port)[0] == 503  # Redis is down: health says so
        time.sleep(8.5)
        own_redis.start()  # empty: every queued message and heartbeat is gone
        recovered_at = time.monotonic()
        for job_id in [running, *waiting]:
            _wait(lambda job_id=job_id: _job(env, job_id)[0] not in ("queued", "running"),
                  90, f"job {job_id} finished", portal.log)  # fmt: skip
        assert time.monotonic() - recovered_at < 90  # the stated bound: resend after 3 s + beat
        statuses = {job_id: _job(env, job_id) for job_id in [running, *waiting]}
        assert all(s[0] == "succeeded" for s in statuses.values()), statuses
        log = portal.text()
        interesting = [line for line in log.splitlines() if "job" in line.lower()]
        # A broadcast failed during the outage: logged, and no harm done.
        assert f"live update of job {running} not sent" in log, "\n".join(interesting[-40:])
        _wait(portal.healthy, 60, "healthy after the Redis restart", portal.log)

        # 2. A frozen train worker: 503 while frozen, 200 once it runs again.
        train = [
            p for p in psutil.Process(portal.process.pid).children()
            if "train@%h" in " ".join(p.cmdline())
        ]  # fmt: skip
        os.killpg(train[0].pid, signal.SIGSTOP)
        try:
            report = _wait(lambda: (h := _healthz(port))[0] == 503 and h[1], 20, "503 while frozen")
            assert "no live consumer of queue train" in report["checks"]["worker"]["error"]
        finally:
            os.killpg(train[0].pid, signal.SIGCONT)
        _wait(portal.healthy, 30, "healthy after the thaw", portal.log)

        # 3. Unwritable storage: 503 with the reason, then 200 again by itself.
        with unwritable(media):
            report = _wait(lambda: (h := _healthz(port))[0] == 503 and h[1], 20, "503 storage")
            assert "storage is not writable" in report["checks"]["storage"]["error"]
        _wait(portal.healthy, 20, "healthy with storage back", portal.log)

        # Nothing left behind: no job active, no orphan file after the sweeper.
        active = _manage(
            env,
            "from apps.jobs.models import Job; "
            "print(Job.objects.filter(status__in=['queued','running']).count())",
        )
        assert active == "0"
        swept = _manage(env, "from apps.ops.sweeper import sweep_orphans; "
                        "print(len(sweep_orphans(grace_s=0)))")  # fmt: skip
        assert int(swept) >= 0
        leftovers = [p for p in media.rglob("*") if p.is_file()]
        assert leftovers == [], leftovers
    finally:
        if portal.process.poll() is None:
            portal.process.send_signal(signal.SIGINT)
            portal.process.wait(timeout=60)
        own_redis.stop()

"""The portal split across "machines": the web process and each worker in its own working
directory, var/ and TMPDIR, sharing only PostgreSQL, Redis and S3 (the moto server). The loop runs
end to end through them: import → train → evaluate → deploy → download."""

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import requests

from tests.conftest import REPO, free_port
from tests.loops.conftest import tiny_yaml
from tests.ops.test_portal_faults import OwnRedis
from tests.ops.test_supervisor_faults import _wait

pytestmark = pytest.mark.slow


def _server_url(database: str) -> str:
    """The PostgreSQL server of DATABASE_URL (CI's), else the local one, with another database."""
    from urllib.parse import urlsplit, urlunsplit

    configured = os.environ.get("DATABASE_URL", "")
    if not configured.startswith(("postgres://", "postgresql://")):
        configured = "postgres://postgres@127.0.0.1:5432/postgres"
    return urlunsplit(urlsplit(configured)._replace(path=f"/{database}"))


ADMIN_DATABASE_URL = _server_url("postgres")


@pytest.fixture
def postgres_database():
    """A database of this test only on the PostgreSQL server, dropped afterwards."""
    import psycopg

    name = f"ilportal_split_{os.getpid()}"
    try:
        admin = psycopg.connect(ADMIN_DATABASE_URL, connect_timeout=3, autocommit=True)
    except psycopg.OperationalError as exc:
        pytest.skip(f"no PostgreSQL at {ADMIN_DATABASE_URL}: {exc}")
    with admin.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}"')
        cursor.execute(f'CREATE DATABASE "{name}"')
    yield _server_url(name)
    with admin.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


class Machine:
    """One process in its own folder: its own cwd, var/ and TMPDIR; the code from the checkout."""

    def __init__(self, root: Path, name: str, shared_env: dict):
        self.name, self.dir = name, root / name
        for sub in ("var", "tmp"):
            (self.dir / sub).mkdir(parents=True)
        self.env = {
            **shared_env,
            "VAR_DIR": str(self.dir / "var"),
            "TMPDIR": str(self.dir / "tmp"),
            "PYTHONPATH": str(REPO),
        }
        self.process = None

    def run(self, *args, timeout=180):
        done = subprocess.run(
            [sys.executable, str(REPO / "manage.py"), *args],
            cwd=self.dir, env=self.env, capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    def start(self, command):
        self.log = self.dir / "process.log"
        self.process = subprocess.Popen(
            [sys.executable, "-m", *command], cwd=self.dir, env=self.env,
            stdout=self.log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def _coco_zip(tmp_path: Path) -> bytes:
    from worker.ml.synthetic import generate_dataset

    annotations = generate_dataset(tmp_path / "synthetic", 28, seed=5, image_size=64)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in annotations.parent.rglob("*"):
            if path.is_file():
                archive.write(path, path.relative_to(annotations.parent).as_posix())
    return buffer.getvalue()


def test_the_loop_runs_across_machines_that_share_only_postgres_redis_and_s3(
    tmp_path, postgres_database, moto_endpoint
):
    import boto3

    own_redis = OwnRedis(tmp_path)
    bucket = "ilportal-split"
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, aws_access_key_id="test",
                      aws_secret_access_key="test", region_name="us-east-1")  # fmt: skip
    s3.create_bucket(Bucket=bucket)
    port = free_port()
    shared = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "REDIS_URL", "ILPORTAL_TEST_DB_NAME", "VAR_DIR"}
    }
    shared.update({
        "DJANGO_SETTINGS_MODULE": "ilportal.settings", "SECRET_KEY": "split-test-secret",
        "DATABASE_URL": postgres_database, "REDIS_URL": own_redis.url,
        "REDIS_KEY_PREFIX": "split", "S3_BUCKET": bucket, "S3_ENDPOINT_URL": moto_endpoint,
        "S3_ACCESS_KEY_ID": "test", "S3_SECRET_ACCESS_KEY": "test", "S3_REGION": "us-east-1",
        "WORKER_HEARTBEAT_INTERVAL_S": "1", "SITE_URL": f"http://127.0.0.1:{port}",
    })  # fmt: skip
    machines = {
        name: Machine(tmp_path, name, shared)
        for name in ("web", "worker-default", "worker-train", "beat")
    }
    try:
        web = machines["web"]
        web.run("migrate", "--noinput")
        admin = json.loads(
            web.run("shell", "--no-imports", "-c",
                    "import json; from apps.accounts.services import ensure_first_admin; "
                    "a = ensure_first_admin(); print(json.dumps([a.username, a.password]))"
                    ).strip().splitlines()[-1]
        )  # fmt: skip
        web.start(["daphne", "-b", "127.0.0.1", "-p", str(port), "ilportal.asgi:application"])
        worker = ["celery", "-A", "ilportal", "worker", "-l", "info", "--without-mingle",
                  "--without-gossip"]  # fmt: skip
        machines["worker-default"].start(
            worker + ["-Q", "default", "-n", "default@split", "-c", "1"]
        )
        machines["worker-train"].start(
            worker + ["-Q", "train", "-n", "train@split", "-c", "1", "--prefetch-multiplier", "1"]
        )
        machines["beat"].start(["celery", "-A", "ilportal", "beat", "-l", "info", "-s",
                                str(machines["beat"].dir / "var" / "schedule")])  # fmt: skip
        url = f"http://127.0.0.1:{port}"

        def logs():
            return "\n".join(
                f"== {m.name}\n{m.log.read_text()[-3000:]}" for m in machines.values()
                if m.process is not None
            )  # fmt: skip

        def healthy():
            try:
                return requests.get(f"{url}/healthz", timeout=3).status_code == 200
            except requests.RequestException:
                return False

        _wait(healthy, 120, "healthz 200 with both queues consumed")

        session = requests.Session()
        session.get(f"{url}/login/")
        session.post(f"{url}/login/", data={
            "username": admin[0], "password": admin[1],
            "csrfmiddlewaretoken": session.cookies["csrftoken"],
        })  # fmt: skip
        headers = {"X-CSRFToken": session.cookies["csrftoken"], "Referer": url + "/"}

        # Import: through the API, into S3, by the default worker.
        from worker.ml.synthetic import CLASS_NAMES

        dataset = session.post(
            f"{url}/api/v1/datasets/", headers=headers,
            json={"name": "split", "class_names": list(CLASS_NAMES)},
        ).json()  # fmt: skip
        started = session.post(
            f"{url}/api/v1/datasets/{dataset['id']}/imports/", headers=headers,
            files={"files": ("synthetic.zip", _coco_zip(tmp_path), "application/zip")},
        )  # fmt: skip
        assert started.status_code == 202, started.text
        job_id = started.json()["job"]["id"]

        def finished(job_id):
            state = session.get(f"{url}/jobs/{job_id}/state/").json()
            return state if state["status"] not in ("queued", "running") else None

        state = _wait(lambda: finished(job_id), 120, f"import\n{logs()}")
        assert state["status"] == "succeeded", state

        # Loop: train (train worker) → evaluate → deploy (default worker), gate without limits.
        created = session.post(f"{url}/loops/new/", headers=headers, data={
            "name": "line-split", "dataset": dataset["id"], "algorithm_yaml": tiny_yaml(steps=60),
            "gate_min_f1": "", "gate_min_f1_gain": "", "gate_max_forgetting": "",
            "auto_evaluate": "on", "auto_deploy": "on", "initial_model": "train",
        }, allow_redirects=False)  # fmt: skip
        assert created.status_code == 302, created.text[-2000:]
        loop_url = url + created.headers["Location"]

        # Redis restarted empty mid-training: the training goes on (live updates are
        # best-effort), and whatever Redis lost (queued messages, heartbeats) is made good.
        train_job = job_id + 1  # a fresh database: the loop's first training comes next

        def train_running():
            return session.get(f"{url}/jobs/{train_job}/state/").json()["status"] == "running"

        _wait(train_running, 120, f"training running\n{logs()}")
        own_redis.stop()
        time.sleep(3)
        own_redis.start()

        def jobs_and_pointer():
            code = (
                "import json; from apps.jobs.models import Job; "
                "from apps.loops.models import Loop; "
                "jobs = list(Job.objects.order_by('pk').values_list('kind', 'status', 'worker')); "
                "loop = Loop.objects.get(); print(json.dumps([jobs, "
                "loop.deployed_version.number if loop.deployed_version else None]))"
            )
            out = web.run("shell", "--no-imports", "-c", code)
            jobs, deployed = json.loads(out.strip().splitlines()[-1])
            active = [j for j in jobs if j[1] in ("queued", "running")]
            return (jobs, deployed) if deployed and not active else None

        jobs, deployed = _wait(jobs_and_pointer, 300, f"train, evaluate and deploy\n{logs()}")
        assert deployed == 1
        assert [tuple(j) for j in jobs] == [
            ("dataset_import", "succeeded", "default@split"),
            ("train", "succeeded", "train@split"),
            ("evaluate", "succeeded", "default@split"),
            ("deploy", "succeeded", "default@split"),
        ]

        # Download from S3 through the web process, verified.
        download = session.get(loop_url + "v1/download/archive/")
        assert download.status_code == 200
        sha256 = download.headers["ETag"].strip('"')
        assert hashlib.sha256(download.content).hexdigest() == sha256
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
        assert any(k.startswith("models/") and k.endswith("-model.zip") for k in keys)
        assert any(k.startswith("datasets/") for k in keys)
        # Nothing went through a shared disk: no machine has a media folder.
        assert not any((m.dir / "var" / "media").exists() for m in machines.values())
    finally:
        for machine in reversed(list(machines.values())):
            machine.stop()
        own_redis.stop()

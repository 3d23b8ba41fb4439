import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest

# Playwright's sync API runs an event loop in the test thread; the ORM calls that tests make
# between browser steps are still synchronous and safe.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session", autouse=True)
def redis_server():
    """The embedded Redis on the socket the settings point at, unless REDIS_URL names one."""
    from django.conf import settings

    from ilportal import embedded_redis

    process = None if not settings.REDIS_IS_EMBEDDED else embedded_redis.start(settings.VAR_DIR)
    yield settings.REDIS_URL
    if process is not None:
        process.terminate()
        process.wait(timeout=10)
    if Path(settings.VAR_DIR).name.startswith("ilportal-test-"):
        shutil.rmtree(settings.VAR_DIR, ignore_errors=True)


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """pytest-django's test database, plus a check that no session outlives the tests on it.

    pytest-django cannot drop a database that another session still uses; this names the culprit
    (its last query) instead of leaving only "being accessed by other users"."""
    yield
    from django.db import connection

    if connection.vendor != "postgresql":
        return
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid, application_name, state, query FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        stray = cursor.fetchall()
    if stray:
        warnings.warn(f"sessions still open on the test database: {stray}", stacklevel=1)


@pytest.fixture(autouse=True)
def _media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "apps.ops.storage.AtomicFileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "media"), "base_url": "/media/"},
        },
    }


@pytest.fixture(autouse=True)
def _no_device_books_from_earlier_tests(redis_server):
    """Device books that an earlier test counted in Redis belong to rows its rollback removed: a
    flush in this test must not find them (they would add queries to the ones it counts)."""
    import redis

    from apps.ops.redis_client import get_redis, key

    try:
        client = get_redis()
        stale = list(client.scan_iter(match=key("edge-books*"), count=1000))
        if stale:
            client.delete(*stale)
    except redis.RedisError:
        pass  # a test that stops Redis has left it stopped: nothing of this kind to forget


@pytest.fixture(scope="session")
def moto_endpoint():
    """A real S3 API (moto in server mode) on a loopback port, for the whole session."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_storage(moto_endpoint, settings, request):
    """Default storage on a fresh bucket of the moto server, through django-storages."""
    import boto3

    bucket = f"ilportal-test-{abs(hash(request.node.nodeid)) % 10**10}"
    client = boto3.client(
        "s3",
        endpoint_url=moto_endpoint,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        region_name="us-east-1",
    )
    client.create_bucket(Bucket=bucket)
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": bucket,
                "endpoint_url": moto_endpoint,
                "access_key": "test",
                "secret_key": "test",
                "region_name": "us-east-1",
                "default_acl": None,
                "file_overwrite": False,
                "querystring_auth": True,
            },
        },
    }
    yield client, bucket


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=15)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


@dataclass
class LivePortal:
    url: str
    ws_url: str
    media_root: Path
    logs: Path
    processes: dict[str, subprocess.Popen]

    def read_logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.logs.glob("*.log")))


@pytest.fixture
def live_portal_env():
    """More environment for the live portal's processes (a test module may override this)."""
    return {}


@pytest.fixture
def live_portal(transactional_db, tmp_path, settings, live_portal_env):
    """The ASGI server and a Celery worker (both queues) as real processes on the test database."""
    from django.db import connection

    from apps.ops.worker_heartbeat import live_workers

    port = free_port()
    logs = tmp_path / "logs"
    logs.mkdir()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "ilportal.settings_test",
        "ILPORTAL_TEST_DB_NAME": connection.settings_dict["NAME"],
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "PYTHONUNBUFFERED": "1",
        **live_portal_env,
    }
    worker_name = f"test-{port}@{socket.gethostname()}"
    commands = {
        "web": [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port),
                "ilportal.asgi:application"],
        "worker": [sys.executable, "-m", "celery", "-A", "ilportal", "worker", "-Q",
                   "default,train", "-c", "1", "-n", worker_name, "-l", "info",
                   "--without-mingle", "--without-gossip"],
    }  # fmt: skip
    processes = {
        name: subprocess.Popen(
            command,
            env=env,
            cwd=REPO,
            stdout=(logs / f"{name}.log").open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        for name, command in commands.items()
    }
    portal = LivePortal(
        url=f"http://127.0.0.1:{port}",
        ws_url=f"ws://127.0.0.1:{port}",
        media_root=settings.MEDIA_ROOT,
        logs=logs,
        processes=processes,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for name, process in processes.items():
                if process.poll() is not None:
                    pytest.fail(f"{name} exited early:\n{portal.read_logs()}")
            web_up = _port_open(port)
            worker_up = any(w["hostname"] == worker_name for w in live_workers())
            if web_up and worker_up:
                break
            time.sleep(0.2)
        else:
            pytest.fail(f"the live portal did not start in 60 s:\n{portal.read_logs()}")
        yield portal
    finally:
        for process in processes.values():
            _stop(process)


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def web_server(transactional_db, tmp_path, settings):
    """daphne serving ilportal.asgi on the test database; yields (port, psutil.Process)."""
    from django.db import connection

    def start(**extra_env):
        port = free_port()
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "ilportal.settings_test",
            "ILPORTAL_TEST_DB_NAME": connection.settings_dict["NAME"],
            "MEDIA_ROOT": str(settings.MEDIA_ROOT),
            **extra_env,
        }
        log = (tmp_path / f"web-{port}.log").open("w")
        process = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port),
             "ilportal.asgi:application"],
            env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        started.append(process)
        deadline = time.monotonic() + 60
        while not _port_open(port):
            assert process.poll() is None, (tmp_path / f"web-{port}.log").read_text()
            assert time.monotonic() < deadline, "daphne did not start"
            time.sleep(0.1)
        import psutil

        return port, psutil.Process(process.pid)

    started: list[subprocess.Popen] = []
    yield start
    for process in started:
        _stop(process)


@pytest.fixture
def admin_user(db):
    from tests.factories import UserFactory

    return UserFactory(username="alice-admin", role="admin")


@pytest.fixture
def labeler_user(db):
    from tests.factories import UserFactory

    return UserFactory(username="lena-labeler", role="labeler")


@pytest.fixture
def viewer_user(db):
    from tests.factories import UserFactory

    return UserFactory(username="victor-viewer", role="viewer")


@pytest.fixture
def client_for(client):
    """A test client logged in as the given user."""

    def log_in(user):
        client.force_login(user)
        return client

    return log_in


@pytest.fixture
def night_shares_seen(monkeypatch) -> list:
    """The night-look share of every FPN training from now on, as its batches get it."""
    from worker.ml.fpn import FPNModel

    seen = []
    original = FPNModel._batch_sampler

    def spy(self, train_data, replay_data, params, rng):
        seen.append(params["night_augment"])
        return original(self, train_data, replay_data, params, rng)

    monkeypatch.setattr(FPNModel, "_batch_sampler", spy)
    return seen

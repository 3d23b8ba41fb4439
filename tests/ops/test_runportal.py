"""The README's run command, from a clean var/ with no REDIS_URL and no DATABASE_URL."""

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import psutil

from tests.conftest import REPO, free_port


def _get_json(url):
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_runportal_starts_embedded_services_serves_healthz_and_stops_cleanly(tmp_path):
    var_dir = tmp_path / "var"
    port = free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"REDIS_URL", "DATABASE_URL", "REDIS_KEY_PREFIX", "ILPORTAL_TEST_DB_NAME"}
    }
    env.update({"VAR_DIR": str(var_dir), "DJANGO_SETTINGS_MODULE": "ilportal.settings"})
    output = (tmp_path / "runportal.log").open("w+")
    portal = subprocess.Popen(
        [sys.executable, "manage.py", "runportal", "--port", str(port), "--stop-timeout", "5"],
        cwd=REPO,
        env=env,
        stdout=output,
        stderr=subprocess.STDOUT,
    )
    try:
        status, report = None, None
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and portal.poll() is None:
            try:
                status, report = _get_json(f"http://127.0.0.1:{port}/healthz")
                if status == 200 and len(report["checks"]["worker"]["workers"]) == 2:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        output.seek(0)
        log = output.read()
        assert status == 200, f"healthz {status} {report}\n{log}"
        assert report["checks"]["redis"]["embedded"] is True
        assert report["checks"]["database"]["vendor"] == "sqlite"
        workers = report["checks"]["worker"]["workers"]
        assert sorted(w.split("@")[0] for w in workers) == ["default", "train"]
        assert "First admin account created" in log
        assert "Demo: dataset 'demo-initial' and loop 'demo'" in log
        assert (var_dir / "db.sqlite3").exists() and (var_dir / "secret_key").exists()
        children = psutil.Process(portal.pid).children(recursive=True)
        assert len(children) >= 5  # redis, web, two workers, beat (and the workers' pools)
    finally:
        portal.send_signal(signal.SIGINT)
        exit_code = portal.wait(timeout=60)
    assert exit_code == 0
    time.sleep(0.5)
    assert [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE] == []
    assert not (var_dir / "redis" / "redis.sock").exists()


def test_several_web_processes_share_the_port_and_one_may_die(tmp_path):
    """`--web-processes 2`: both daphne processes serve the port; one killed with -9 is started
    again while the other keeps answering."""
    port = free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"REDIS_URL", "DATABASE_URL", "REDIS_KEY_PREFIX", "ILPORTAL_TEST_DB_NAME"}
    }
    env.update({"VAR_DIR": str(tmp_path / "var"), "DJANGO_SETTINGS_MODULE": "ilportal.settings"})
    output = (tmp_path / "runportal.log").open("w+")
    portal = subprocess.Popen(
        [sys.executable, "manage.py", "runportal", "--port", str(port), "--stop-timeout", "5",
         "--no-demo", "--web-processes", "2"],
        cwd=REPO, env=env, stdout=output, stderr=subprocess.STDOUT,
    )  # fmt: skip

    def web_processes() -> list[int]:
        """Pids of the live daphne processes (a killed one stays a zombie until reaped)."""
        pids = []
        for child in psutil.Process(portal.pid).children(recursive=True):
            try:
                if "daphne" in child.cmdline() and "--fd" in child.cmdline():
                    pids.append(child.pid)
            except psutil.Error:  # zombie or gone
                pass
        return pids

    def answers() -> int:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/login/", timeout=5) as page:
                return page.status
        except (OSError, urllib.error.HTTPError):
            return 0

    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and answers() != 200:
            time.sleep(0.5)
        first = web_processes()
        output.seek(0)
        assert len(first) == 2, output.read()
        killed = first[0]
        os.kill(killed, signal.SIGKILL)
        statuses = [answers() for _ in range(20)]  # the other one answers meanwhile
        assert statuses == [200] * 20
        deadline = time.monotonic() + 30
        now = web_processes()
        while time.monotonic() < deadline and (len(now) < 2 or killed in now):
            time.sleep(0.2)
            now = web_processes()
        assert len(now) == 2 and killed not in now
        output.seek(0)
        assert re.search(r"web(-2)? exited with status -9", output.read())
    finally:
        portal.send_signal(signal.SIGINT)
        exit_code = portal.wait(timeout=60)
    assert exit_code == 0


def test_var_is_made_owner_only_at_start(tmp_path):
    """An install whose var/ was created 0755 (database and sessions readable by every local
    account) is narrowed to 0700 when the portal starts; a private one is left alone."""
    from apps.ops.management.commands.runportal import make_private

    var = tmp_path / "var"
    var.mkdir(mode=0o755)
    var.chmod(0o755)
    assert make_private(var) is True
    assert var.stat().st_mode & 0o777 == 0o700
    assert make_private(var) is False


def test_the_settings_create_var_owner_only(tmp_path):
    var = tmp_path / "fresh-var"
    subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=REPO,
        env={**os.environ, "VAR_DIR": str(var), "DJANGO_SETTINGS_MODULE": "ilportal.settings"},
        check=True,
        timeout=120,
    )
    assert var.stat().st_mode & 0o777 == 0o700

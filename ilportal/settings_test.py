"""Test settings: the real services named by the environment (PostgreSQL and Redis in CI).

Processes that tests start (a Celery worker, the ASGI server) use this module too; they find the
test database through ILPORTAL_TEST_DB_NAME, which the fixture that starts them sets.
"""

import os
import tempfile

# A fresh var/ per test session (processes the tests start inherit it through the environment),
# so concurrent test runs never share the SQLite file or the embedded Redis socket.
os.environ.setdefault("VAR_DIR", tempfile.mkdtemp(prefix="ilportal-test-"))
# Keys of this test session in Redis: concurrent runs and a running portal don't see each other.
os.environ.setdefault("REDIS_KEY_PREFIX", f"ilportal-test-{os.getpid()}")

from ilportal.settings import *  # noqa: E402,F403
from ilportal.settings import DATABASES, VAR_DIR  # noqa: E402

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
JOB_PROGRESS_MIN_INTERVAL_S = 0.0
WORKER_HEARTBEAT_INTERVAL_S = 1

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not memory, so that worker processes started by tests share it.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}
if os.environ.get("ILPORTAL_TEST_DB_NAME"):
    DATABASES["default"]["NAME"] = os.environ["ILPORTAL_TEST_DB_NAME"]

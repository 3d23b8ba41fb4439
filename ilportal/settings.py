"""ilportal settings: one module, driven by environment variables (see docs/configuration.md).

With no environment at all the portal runs embedded: SQLite and files under var/, and the
embedded Redis that `manage.py runportal` starts on a unix socket in var/redis/.
"""

import os
import secrets
from pathlib import Path

import dj_database_url

from ilportal.env import envbool, envint, envlist, envstr
from ilportal.redis_url import celery_broker_url, embedded_redis_url

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(envstr("VAR_DIR", str(BASE_DIR / "var"))).resolve()
# Owner-only: it holds the SQLite database (sessions, password and token hashes), the secret key
# and local media (runportal also narrows an existing var/ this way at start).
VAR_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)


def _development_secret_key() -> str:
    """Generated once into var/ so a checkout runs at once and no secret is ever committed."""
    key_file = VAR_DIR / "secret_key"
    if not key_file.exists():
        key_file.touch(mode=0o600)
        key_file.write_text(secrets.token_urlsafe(50))
    return key_file.read_text().strip()


SECRET_KEY = envstr("SECRET_KEY") or _development_secret_key()
DEBUG = envbool("DEBUG", False)
ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS", [])
SITE_URL = envstr("SITE_URL", "http://127.0.0.1:8000")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "channels",
    "rest_framework",
    "drf_spectacular",
    "apps.accounts",
    "apps.jobs",
    "apps.ops",
    "apps.dashboard",
    "apps.loops",
    "apps.datasets",
    "apps.labeling",
    "apps.triggers",
    "apps.edge",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "ilportal.slash_redirects.SlashAppendingMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "ilportal.content_security_policy.ContentSecurityPolicyMiddleware",
    # Last, so that it sees a view's exception first: outages become clear answers (503).
    "apps.ops.middleware.ServiceUnavailableMiddleware",
]

ROOT_URLCONF = "ilportal.urls"
ASGI_APPLICATION = "ilportal.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database: SQLite in var/ unless DATABASE_URL names PostgreSQL -------------------------
DATABASES = {
    "default": dj_database_url.parse(
        envstr("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'db.sqlite3'}",
        conn_max_age=envint("DATABASE_CONN_MAX_AGE", 0),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web, workers and beat write to the same file: wait for the lock instead of failing.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 20, "transaction_mode": "IMMEDIATE", "init_command": "PRAGMA journal_mode=WAL;"}
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: Celery broker, locks and the channels layer --------------------------------------
REDIS_URL = envstr("REDIS_URL") or embedded_redis_url(VAR_DIR)
REDIS_IS_EMBEDDED = not envstr("REDIS_URL")
REDIS_KEY_PREFIX = envstr("REDIS_KEY_PREFIX", "ilportal")

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            # redis-py's default read timeout (5 s) equals the layer's blocking-pop timeout
            # (5 s): an idle job page then lost its socket with "Timeout reading from …".
            # Reads must wait longer than the server may block.
            "hosts": [
                {
                    "address": REDIS_URL,
                    "socket_timeout": envint("CHANNEL_LAYER_SOCKET_TIMEOUT_S", 30),
                    "socket_connect_timeout": 5,
                }
            ],
            "prefix": f"{REDIS_KEY_PREFIX}:channels",
        },
    }
}

# --- Celery ----------------------------------------------------------------------------------
TRAIN_TASK_HARD_LIMIT_S = envint("TRAIN_TASK_HARD_LIMIT_S", 6 * 3600)
CELERY_BROKER_URL = celery_broker_url(REDIS_URL)
CELERY_BROKER_TRANSPORT_OPTIONS = {
    # Longer than the longest hard time limit, so Redis never re-delivers a running training.
    "visibility_timeout": TRAIN_TASK_HARD_LIMIT_S + 3600,
    "global_keyprefix": f"{REDIS_KEY_PREFIX}:celery:",
}
CELERY_TASK_IGNORE_RESULT = True  # results live on the Job row
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ALWAYS_EAGER = envbool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULE_FILE = str(VAR_DIR / "celerybeat-schedule")
WORKER_HEARTBEAT_INTERVAL_S = envint("WORKER_HEARTBEAT_INTERVAL_S", 10)
WORKER_HEARTBEAT_MAX_AGE_S = envint("WORKER_HEARTBEAT_MAX_AGE_S", 60)
# How often Celery beat evaluates every trigger rule (time rules, finished measurements).
# Labels and deploys are evaluated at once as events; this period only bounds the rest.
TRIGGER_CHECK_PERIOD_S = max(1, envint("TRIGGER_CHECK_PERIOD_S", 10))
JOB_PROGRESS_MIN_INTERVAL_S = float(envstr("JOB_PROGRESS_MIN_INTERVAL_S", "0.5"))
# Plugin modules (docs/ml.md) a loop's algorithm YAML may name in `plugins:`; importing one runs
# its code in every process, so only those the operator installed and lists here.
ALGORITHM_PLUGINS = envlist("ALGORITHM_PLUGINS", [])

# --- Files: local under var/media, or S3-compatible object storage --------------------------
MEDIA_ROOT = Path(envstr("MEDIA_ROOT", str(VAR_DIR / "media")))
MEDIA_URL = "/media/"
S3_BUCKET = envstr("S3_BUCKET")
S3_ENDPOINT_URL = envstr("S3_ENDPOINT_URL")
S3_ACCESS_KEY_ID = envstr("S3_ACCESS_KEY_ID")
S3_SECRET_ACCESS_KEY = envstr("S3_SECRET_ACCESS_KEY")
S3_REGION = envstr("S3_REGION")
if S3_BUCKET:
    _default_storage = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": S3_BUCKET,
            "endpoint_url": S3_ENDPOINT_URL or None,
            "access_key": S3_ACCESS_KEY_ID or None,
            "secret_key": S3_SECRET_ACCESS_KEY or None,
            "region_name": S3_REGION or None,
            "location": envstr("S3_PREFIX", ""),
            "default_acl": None,
            "file_overwrite": False,
            "querystring_auth": True,
        },
    }
else:
    _default_storage = {
        "BACKEND": "apps.ops.storage.AtomicFileSystemStorage",
        "OPTIONS": {"location": str(MEDIA_ROOT), "base_url": MEDIA_URL},
    }
# Who sends a file once a view has checked the permission (ilportal/protected_files.py):
# "django", "x-accel-redirect" (nginx, local storage) or "s3-presigned" (S3).
FILE_SERVING = envstr("FILE_SERVING", "django")
FILE_SERVING_ACCEL_PREFIX = envstr("FILE_SERVING_ACCEL_PREFIX", "/protected-media/")
FILE_SERVING_URL_EXPIRY_S = envint("FILE_SERVING_URL_EXPIRY_S", 60)
# Unset: the portal's own policy (ilportal/content_security_policy.py); empty: no header.
CONTENT_SECURITY_POLICY = os.environ.get("CONTENT_SECURITY_POLICY")
# Local media files and folders (octal): owner-only unless set, e.g. 640/750 so that a group
# such as nginx's (FILE_SERVING=x-accel-redirect) may read them.
FILE_UPLOAD_PERMISSIONS = int(envstr("FILE_UPLOAD_PERMISSIONS", "600"), 8)
FILE_UPLOAD_DIRECTORY_PERMISSIONS = int(envstr("FILE_UPLOAD_DIRECTORY_PERMISSIONS", "700"), 8)
STORAGES = {
    "default": _default_storage,
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "staticfiles"
STATIC_ROOT.mkdir(exist_ok=True)
STATICFILES_DIRS = [BASE_DIR / "static"]
WHITENOISE_USE_FINDERS = True  # serve static/ without collectstatic in a checkout

# --- Datasets: what an upload may hold (see docs/datasets.md) -------------------------------
DATASET_MAX_UPLOAD_BYTES = envint("DATASET_MAX_UPLOAD_BYTES", 4 * 1024**3)
DATASET_MAX_IMAGE_BYTES = envint("DATASET_MAX_IMAGE_BYTES", 50 * 1024**2)
DATASET_MAX_IMAGE_PIXELS = envint("DATASET_MAX_IMAGE_PIXELS", 40_000_000)
DATASET_MAX_UNPACKED_BYTES = envint("DATASET_MAX_UNPACKED_BYTES", 8 * 1024**3)
DATASET_MAX_ZIP_RATIO = envint("DATASET_MAX_ZIP_RATIO", 100)
DATASET_MAX_ZIP_ENTRIES = envint("DATASET_MAX_ZIP_ENTRIES", 250_000)
DATASET_THUMBNAIL_PX = envint("DATASET_THUMBNAIL_PX", 256)
DATASET_PAGE_SIZE = envint("DATASET_PAGE_SIZE", 48)
DATASET_IMPORT_TIME_LIMIT_S = envint("DATASET_IMPORT_TIME_LIMIT_S", 4 * 3600)
# Boxes one image may carry (import, API, labeling): more is refused, never truncated.
DATASET_MAX_BOXES_PER_IMAGE = envint("DATASET_MAX_BOXES_PER_IMAGE", 1000)
# Lines of each outcome an import keeps in its job row; the full report is a file in storage.
DATASET_IMPORT_REPORT_LINES = envint("DATASET_IMPORT_REPORT_LINES", 100)
DATASET_EXPORT_TIME_LIMIT_S = envint("DATASET_EXPORT_TIME_LIMIT_S", 4 * 3600)
# Threads that read images from storage at once while an export is written.
DATASET_EXPORT_READERS = envint("DATASET_EXPORT_READERS", 8)
# A finished export's zip is deleted this long after it was made (checked hourly).
DATASET_EXPORT_KEEP_HOURS = envint("DATASET_EXPORT_KEEP_HOURS", 72)
DATA_UPLOAD_MAX_NUMBER_FILES = envint("DATASET_MAX_UPLOAD_FILES", 10_000)  # Django's default: 100
# Any request body: the web server answers 413 past this, before the body is stored anywhere.
# Views that take larger bodies (uploads) declare who may send them (apps/accounts/body_gate.py).
REQUEST_MAX_BODY_BYTES = envint("REQUEST_MAX_BODY_BYTES", DATASET_MAX_UPLOAD_BYTES + 16 * 1024**2)
# A request's headers must arrive within this many seconds of their first byte (slowloris).
REQUEST_HEADER_TIMEOUT_S = float(envstr("REQUEST_HEADER_TIMEOUT_S", "30"))

# --- Labeling: how long a claimed sample stays reserved for its labeler ----------------------
LABELING_CLAIM_MINUTES = envint("LABELING_CLAIM_MINUTES", 30)
LABELING_RETURNED_CLAIM_HOURS = envint("LABELING_RETURNED_CLAIM_HOURS", 24)

# --- Edge: predict API, intake, fleet (see docs/edge.md) ----------------------------------
EDGE_MAX_IMAGE_BYTES = envint("EDGE_MAX_IMAGE_BYTES", 20 * 1024**2)
EDGE_MAX_IMAGE_PIXELS = envint("EDGE_MAX_IMAGE_PIXELS", 25_000_000)
EDGE_MAX_BATCH = envint("EDGE_MAX_BATCH", 16)
# Decoded images in memory: all images of one request together, and requests decoding at once per
# web process (a 25 MP image is ~75 MB as an array; a request waits up to EDGE_DECODE_WAIT_S).
EDGE_MAX_REQUEST_PIXELS = envint("EDGE_MAX_REQUEST_PIXELS", 50_000_000)
EDGE_CONCURRENT_DECODES = envint("EDGE_CONCURRENT_DECODES", 2)
EDGE_DECODE_WAIT_S = envint("EDGE_DECODE_WAIT_S", 30)
EDGE_DEVICE_REQUESTS_PER_MINUTE = envint("EDGE_DEVICE_REQUESTS_PER_MINUTE", 1200)
EDGE_INFERENCE_THREADS = envint("EDGE_INFERENCE_THREADS", 2)
EDGE_SILENT_AFTER_S = envint("EDGE_SILENT_AFTER_S", 15 * 60)
# --- REST API (/api/v1/): session auth for browsers, device tokens for edge clients -------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # First, so that a request without credentials gets 401 + WWW-Authenticate: Bearer.
        "apps.accounts.api_auth.DeviceTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["apps.accounts.api_auth.ModelPermissions"],
    "DEFAULT_PARSER_CLASSES": [
        "ilportal.api_parsers.JSONBodyParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_SCHEMA_CLASS": "ilportal.api_schema.ApiAutoSchema",  # documents error answers
    "DEFAULT_PAGINATION_CLASS": None,
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "ilportal.api_negotiation.BlankAcceptIsAny",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "ilportal API",
    "VERSION": "1",
    "DESCRIPTION": "Datasets, samples and annotations; loops, model versions, evaluations, "
    "deployments, jobs and trigger rules. Browsers use their session; edge clients "
    "send `Authorization: Bearer <device token>`.",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": "/api/v1",
    # Django's <int:...> matches [0-9]+ only: a negative id never reaches a view.
    "PATH_CONVERTER_OVERRIDES": {"int": {"type": "integer", "minimum": 0}},
    # Samples and jobs both have a `status`, samples and annotations a `source`: each enum
    # keeps its own name.
    "ENUM_NAME_OVERRIDES": {
        "JobStatusEnum": "apps.jobs.models.JobStatus",
        "SampleStatusEnum": "apps.datasets.models.SampleStatus",
        "SampleSourceEnum": "apps.datasets.models.SampleSource",
        "AnnotationSourceEnum": "apps.datasets.models.AnnotationSource",
        # Deployments and trigger rules both have an `action`.
        "DeploymentActionEnum": "apps.loops.models.DeploymentAction",
        "RuleActionEnum": "apps.triggers.models.RuleAction",
    },
    # Request bodies get their own components, so that an uploaded file is `format: binary`
    # (not the `uri` a response would hold) and read-only fields are not asked for.
    "COMPONENT_SPLIT_REQUEST": True,
}

# --- Accounts and sessions -------------------------------------------------------------------
LOGIN_URL = "login"
# Failed sign-ins per account and address before that pair must wait (apps.accounts.login_throttle).
LOGIN_MAX_FAILURES = envint("LOGIN_MAX_FAILURES", 10)
LOGIN_LOCKOUT_S = envint("LOGIN_LOCKOUT_S", 900)
# Reverse proxies whose X-Forwarded-For names the client (apps/accounts/client_address.py).
TRUSTED_PROXIES = envlist("TRUSTED_PROXIES", [])
LOGIN_REDIRECT_URL = "dashboard:home"
LOGOUT_REDIRECT_URL = "login"
SESSION_COOKIE_AGE = envint("SESSION_COOKIE_AGE", 14 * 24 * 3600)
SESSION_COOKIE_SECURE = envbool("SESSION_COOKIE_SECURE", False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = envstr("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": envstr("LOG_LEVEL", "INFO")},
    "loggers": {"django.channels.server": {"level": "WARNING"}},
}

# --- Jobs -----------------------------------------------------------------------------------
# A running job whose worker sent no heartbeat for this long is marked failed by the reaper.
JOB_HEARTBEAT_TIMEOUT_S = envint("JOB_HEARTBEAT_TIMEOUT_S", 120)
# A queued job whose message is not in its queue this long after it was sent is sent again;
# one that no live worker could take for JOB_QUEUED_MAX_WAIT_S is failed with the reason.
JOB_QUEUED_RESEND_AFTER_S = envint("JOB_QUEUED_RESEND_AFTER_S", 60)
JOB_QUEUED_MAX_WAIT_S = envint("JOB_QUEUED_MAX_WAIT_S", 6 * 3600)
# The queues /healthz expects a live consumer for (each worker's heartbeat names its queues).
HEALTH_QUEUES = envlist("HEALTH_QUEUES", ["default", "train"])
# /healthz writes and deletes a probe object; its outcome is reused for this long.
HEALTH_STORAGE_PROBE_CACHE_S = float(envstr("HEALTH_STORAGE_PROBE_CACHE_S", "5"))
# The sweeper (beat, hourly; `manage.py sweep_orphans --dry-run`) leaves anything younger alone.
SWEEP_GRACE_S = envint("SWEEP_GRACE_S", 6 * 3600)

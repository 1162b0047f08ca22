"""Django settings for the job router.

Every value that differs between deployments is read from the environment here, and only here,
through the typed helpers below; `.env.example` and the README's Configuration section document
each variable. A `.env` file next to `manage.py` fills in what the environment leaves unset
(`jobrouter.envfile`).
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
import sys
import tempfile
from pathlib import Path
from typing import Any, overload

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from jobrouter.envfile import load_env_file

BASE_DIR = Path(__file__).resolve().parent.parent
# Before any setting is read: the real environment wins over the file.
load_env_file()


@overload
def env_str(name: str, default: str) -> str: ...
@overload
def env_str(name: str, default: None = None) -> str | None: ...
def env_str(name: str, default: str | None = None) -> str | None:
    """A string setting; unset or empty gives `default`."""
    value = os.environ.get(name)
    return default if value in (None, "") else value


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value in (None, ""):
        return default
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (true/false), got {value!r}")


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    if value in (None, ""):
        return default
    try:
        return float(value)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be a number, got {value!r}") from exc


def env_list(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name)
    if value in (None, ""):
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


DEBUG = env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["*"])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])
# Pages allowed to open websockets (jobrouter/origins.py); empty: derived from ALLOWED_HOSTS.
JOBROUTER_ALLOWED_ORIGINS = env_list("JOBROUTER_ALLOWED_ORIGINS", [])
if "*" in JOBROUTER_ALLOWED_ORIGINS and not DEBUG:
    raise ImproperlyConfigured("JOBROUTER_ALLOWED_ORIGINS=* lets any web page drive a logged-in desk; "
                               "list the origins (https://desk.example.com) or use same-origin.")

# Local state (SQLite file, generated keys) lives here, outside version control.
VAR_DIR = Path(env_str("JOBROUTER_VAR_DIR", str(BASE_DIR / "var")))


def _generated_secret(name: str, filename: str, make) -> str:
    """A secret from the environment, or generated once into var/<filename> (mode 600) so that
    every process of this installation shares it and it survives restarts."""
    value = env_str(name)
    if value is not None:
        return value
    path = VAR_DIR / filename
    if path.exists():
        return path.read_text().strip()
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    # Written whole to a temporary file, then linked into place: of two processes starting at
    # once, exactly one link succeeds and both read the same complete value.
    fd, temporary = tempfile.mkstemp(dir=VAR_DIR, prefix=f".{filename}.")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(make() + "\n")
        os.link(temporary, path)
        print(f"{name} was not set; generated one in {path}", file=sys.stderr)
    except FileExistsError:
        pass
    finally:
        os.unlink(temporary)
    return path.read_text().strip()


# Signs sessions and waiting-room links: never a value known to anyone but this installation.
SECRET_KEY = _generated_secret("DJANGO_SECRET_KEY", "secret-key", lambda: secrets.token_urlsafe(50))


def _load_access_key() -> str:
    """The base64 HMAC key that clients sign requests with (ACS Job Router §1.2).

    Read from JOBROUTER_ACCESS_KEY; when unset (development), a key is generated once into
    `var/access-key`, shared by the web server and the background worker across restarts.
    Raises ImproperlyConfigured when the value is not valid base64.
    """
    key = _generated_secret(
        "JOBROUTER_ACCESS_KEY", "access-key", lambda: base64.b64encode(secrets.token_bytes(32)).decode()
    )
    try:
        base64.b64decode(key, validate=False)
    except binascii.Error as exc:
        raise ImproperlyConfigured("JOBROUTER_ACCESS_KEY must be base64") from exc
    return key


JOBROUTER_ACCESS_KEY = _load_access_key()
# Allowed clock skew of x-ms-date against the server clock, in seconds.
JOBROUTER_MAX_CLOCK_SKEW_SECONDS = env_float("JOBROUTER_MAX_CLOCK_SKEW_SECONDS", 15 * 60)
# The timer loop never sleeps longer than this, in seconds, so that due times stored by other
# processes are seen quickly (the loop re-reads the earliest due time each wake-up).
JOBROUTER_TIMER_POLL_SECONDS = env_float("JOBROUTER_TIMER_POLL_SECONDS", 0.2)

# Timeout of one function / webhook rule call (classification, scoring), in seconds.
JOBROUTER_RULE_TIMEOUT_SECONDS = env_float("JOBROUTER_RULE_TIMEOUT_SECONDS", 5)
# requests-oauthlib refuses token endpoints over plain http unless told otherwise; allow it for
# local webhook endpoints (tests, development) only when asked.
# Also lets event subscriptions name plain http:// endpoints (refused otherwise).
JOBROUTER_ALLOW_HTTP_WEBHOOKS = env_bool("JOBROUTER_ALLOW_HTTP_WEBHOOKS", False)
if JOBROUTER_ALLOW_HTTP_WEBHOOKS:
    os.environ["OAUTHLIB_INSECURE_TRANSPORT"] = "1"

# Router events (Event Grid publisher): the `topic` / CloudEvents `source` of every event, in the
# shape of an ACS resource path.
JOBROUTER_EVENT_TOPIC = env_str(
    "JOBROUTER_EVENT_TOPIC",
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/jobrouter"
    "/providers/Microsoft.Communication/communicationServices/jobrouter",
)
# The router's own base URL as webhook endpoints reach it (validationUrl of the handshake).
JOBROUTER_PUBLIC_URL = env_str("JOBROUTER_PUBLIC_URL", "http://localhost:8000").rstrip("/")
# Events are kept this many days (job and worker timelines), then pruned by the timer loop.
JOBROUTER_EVENT_RETENTION_DAYS = env_float("JOBROUTER_EVENT_RETENTION_DAYS", 30)
# One webhook delivery (a POST of a batch) may take this long, in seconds (Event Grid: 30).
JOBROUTER_EVENT_DELIVERY_TIMEOUT_SECONDS = env_float("JOBROUTER_EVENT_DELIVERY_TIMEOUT_SECONDS", 30)
# Subscriptions one background worker delivers to at once (one thread each).
JOBROUTER_EVENT_DELIVERY_THREADS = int(env_float("JOBROUTER_EVENT_DELIVERY_THREADS", 8))

# How long a waiting-room link stays valid, in seconds.
JOBROUTER_WAITING_ROOM_TTL_SECONDS = env_float("JOBROUTER_WAITING_ROOM_TTL_SECONDS", 4 * 3600)
# Channel of jobs created by customers on the self-service page.
JOBROUTER_SELF_SERVICE_CHANNEL = env_str("JOBROUTER_SELF_SERVICE_CHANNEL", "chat")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "channels",
    # `routing` comes before django_q so that its `qcluster` command (which adds the timer
    # loop) takes precedence over django_q's own.
    "routing",
    "agents",
    "django_q",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # /routing bodies: 413 over DATA_UPLOAD_MAX_MEMORY_SIZE, 415 unless JSON; before HMAC reads them.
    "routing.api.middleware.RequestLimitsMiddleware",
    "routing.api.auth.HmacAuthenticationMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "jobrouter.urls"
# Largest request body (routing.limits.MAX_BODY_BYTES): the API answers 413 beyond it.
DATA_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024
# Azure ids may contain characters CommonMiddleware would "fix"; never redirect API calls.
APPEND_SLASH = False

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

WSGI_APPLICATION = None
ASGI_APPLICATION = "jobrouter.asgi.application"


def _database_config() -> dict[str, Any]:
    default_sqlite = f"sqlite:///{VAR_DIR / 'jobrouter.sqlite3'}"
    url = env_str("DATABASE_URL", default_sqlite)
    config: dict[str, Any] = dict(dj_database_url.parse(url, conn_max_age=0))
    if config["ENGINE"] == "django.db.backends.postgresql" and env_bool("JOBROUTER_DB_POOL", True):
        # A new PostgreSQL connection per request costs the server about 3 ms of CPU (as much as
        # a whole minimal request), and under ASGI every request runs on its own thread, so
        # CONN_MAX_AGE cannot keep one: use psycopg's pool (Django 5.1+), whose connections Django
        # checks before use (a restarted database is reconnected to, not an error).
        config.setdefault("OPTIONS", {})["pool"] = {
            "min_size": 1,
            "max_size": int(env_float("JOBROUTER_DB_POOL_SIZE", 20)),
        }
    if config["ENGINE"] == "django.db.backends.sqlite3":
        Path(config["NAME"]).parent.mkdir(parents=True, exist_ok=True)
        config["OPTIONS"] = {
            # Writers take the lock at BEGIN, so a transaction never fails half-way with
            # "database is locked" when it upgrades from read to write; readers are not blocked.
            "transaction_mode": "IMMEDIATE",
            "timeout": 30,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
        # Tests use a file (not :memory:) so that threads and server processes share it; one per
        # test run, so that two runs on one machine do not drop each other's tables.
        config["TEST"] = {"NAME": str(Path(config["NAME"]).with_name(f"test_jobrouter_{os.getpid()}.sqlite3"))}
    return config


DATABASES = {"default": _database_config()}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env_str("REDIS_URL")

# Shared by every process (web, background workers): the webhook-rule token cache lives here.
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "jobrouter_cache"}}

if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # redis-py 8 times socket reads out after 5 s by default, the same 5 s that
            # channels-redis blocks on BZPOPMIN for: under load the read loses the race and the
            # consumer dies. A longer read timeout leaves the blocking pop to end first.
            "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": 30}]},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# Longest a background task (a classification calling out over HTTP) may run, seconds.
JOBROUTER_TASK_TIMEOUT_SECONDS = 60
Q_CLUSTER = {
    "name": "jobrouter",
    "workers": int(env_float("JOBROUTER_QUEUE_WORKERS", 2)),
    "timeout": JOBROUTER_TASK_TIMEOUT_SECONDS,
    "retry": 120,
    "catch_up": False,
    "poll": 0.2,
    "label": "Background tasks",
}
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"

LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/desk/"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["routing.api.parsers.RouterJSONParser"],
    "EXCEPTION_HANDLER": "routing.api.errors.exception_handler",
    "UNAUTHENTICATED_USER": None,
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("JOBROUTER_LOG_LEVEL", "INFO")},
    "loggers": {"django.channels.server": {"level": "WARNING"}},
}

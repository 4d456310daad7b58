"""leadhub settings: every knob is read from the environment here, and only here (see README, Configuration)."""

import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool = False) -> bool:
    return os.environ.get(name, "1" if default else "0").strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


DEBUG = env_bool("DJANGO_DEBUG")
SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY is required unless DJANGO_DEBUG=1")
    SECRET_KEY = "dev-only-insecure-key-do-not-use-in-production"
# Fernet keys for secrets stored in the database (CloudAgent API keys), newest first: the first encrypts, all
# decrypt, so a key is rotated by prepending a new one and running `manage.py reencrypt_secrets`.
LEADHUB_FIELD_ENCRYPTION_KEYS = [
    k.strip() for k in os.environ.get("LEADHUB_FIELD_ENCRYPTION_KEYS", "").split(",") if k.strip()
]
if not LEADHUB_FIELD_ENCRYPTION_KEYS:
    if not DEBUG:
        raise ImproperlyConfigured(
            "LEADHUB_FIELD_ENCRYPTION_KEYS is required unless DJANGO_DEBUG=1; make one with "
            '`python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"`'
        )
    LEADHUB_FIELD_ENCRYPTION_KEYS = ["ZGV2LW9ubHktaW5zZWN1cmUta2V5LWRvLW5vdC11c2U="]  # dev only, like SECRET_KEY's
ALLOWED_HOSTS = [h.strip() for h in os.environ.get("ALLOWED_HOSTS", "127.0.0.1,localhost").split(",") if h.strip()]
CSRF_TRUSTED_ORIGINS = [o.strip() for o in os.environ.get("CSRF_TRUSTED_ORIGINS", "").split(",") if o.strip()]

INSTALLED_APPS = [
    "leadhub.apps.LeadhubAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_rq",
    "import_export",
    "axes",
    "campaigns",
    "uploads",
    "calls",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # last, as django-axes asks: it answers a locked-out login
]

# Password guessing on the admin login: after LEADHUB_LOGIN_FAILURE_LIMIT failures for one user name from one
# address, that pair is locked out for LEADHUB_LOGIN_COOLOFF_MINUTES (django-axes, attempts kept in the database).
# Locking the user name alone would let anyone lock a known user out.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_int("LEADHUB_LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("LEADHUB_LOGIN_COOLOFF_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
# Reverse proxies of ours in front of the app, each appending to X-Forwarded-For (0: none, REMOTE_ADDR is the
# client).
LEADHUB_TRUSTED_PROXY_COUNT = env_int("LEADHUB_TRUSTED_PROXY_COUNT", 0)
AXES_CLIENT_IP_CALLABLE = "leadhub.clientip.client_ip"

ROOT_URLCONF = "leadhub.urls"
WSGI_APPLICATION = "leadhub.wsgi.application"

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

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{BASE_DIR / 'var' / 'leadhub.sqlite3'}"),
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web server and several RQ workers write at once: WAL lets readers run beside the writer, the busy
    # timeout makes a writer wait instead of failing, and IMMEDIATE transactions take the write lock up
    # front so two transactions never deadlock upgrading read locks ("database is locked").
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)  # var/ is not in git
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=30000;",
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
# CloudAgent's timestamps carry no zone; its servers run on Indian time.
TIME_ZONE = "Asia/Kolkata"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "var" / "static"
MEDIA_URL = "media/"
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", BASE_DIR / "var" / "media"))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
# Uploaded lead files can be large; Django streams bigger bodies to temp files.
DATA_UPLOAD_MAX_NUMBER_FIELDS = 20_000
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
RQ_QUEUES = {name: {"URL": REDIS_URL, "DEFAULT_TIMEOUT": 3600} for name in ("default", "callbacks", "imports")}
RQ_SHOW_ADMIN_LINK = True
# django-import-export allows import and export to anyone with the admin when these are unset.
IMPORT_EXPORT_IMPORT_PERMISSION_CODE = "import"
IMPORT_EXPORT_EXPORT_PERMISSION_CODE = "export"

# Plain http for CloudAgent base URLs and fetched failed-rows files: development and benchmarks only (the API
# key and the provider's files cross the network); `check --deploy` fails when it is on without DJANGO_DEBUG.
LEADHUB_ALLOW_PLAIN_HTTP = env_bool("LEADHUB_ALLOW_PLAIN_HTTP", DEBUG)
LEADHUB_PUBLIC_URL = os.environ.get("LEADHUB_PUBLIC_URL", "http://127.0.0.1:8000").rstrip("/")
CLOUDAGENT_BATCH_SIZE = env_int("CLOUDAGENT_BATCH_SIZE", 500)
if not 1 <= CLOUDAGENT_BATCH_SIZE <= 500:
    raise ImproperlyConfigured("CLOUDAGENT_BATCH_SIZE must be between 1 and 500 (the provider's limit)")
CLOUDAGENT_REQUESTS_PER_WINDOW = env_int("CLOUDAGENT_REQUESTS_PER_WINDOW", 5)
CLOUDAGENT_WINDOW_SECONDS = env_float("CLOUDAGENT_WINDOW_SECONDS", 60)
# Requests are spaced window/limit x (1 + margin) apart, so the provider's clock and network jitter up to
# margin x window never squeeze a sixth request into its minute.
CLOUDAGENT_RATE_MARGIN = env_float("CLOUDAGENT_RATE_MARGIN", 0.02)
CLOUDAGENT_RATE_MIN_SLACK_SECONDS = env_float("CLOUDAGENT_RATE_MIN_SLACK_SECONDS", 0.3)
CLOUDAGENT_CONNECT_TIMEOUT = env_float("CLOUDAGENT_CONNECT_TIMEOUT", 5)
CLOUDAGENT_READ_TIMEOUT = env_float("CLOUDAGENT_READ_TIMEOUT", 30)
CLOUDAGENT_MAX_ATTEMPTS = env_int("CLOUDAGENT_MAX_ATTEMPTS", 6)
CLOUDAGENT_BACKOFF_SECONDS = env_float("CLOUDAGENT_BACKOFF_SECONDS", 5)
CLOUDAGENT_BACKOFF_MAX_SECONDS = env_float("CLOUDAGENT_BACKOFF_MAX_SECONDS", 600)
CLOUDAGENT_CALLBACK_OVERDUE_SECONDS = env_int("CLOUDAGENT_CALLBACK_OVERDUE_SECONDS", 3600)
# After a callback secret is rotated the old URL answers this long (callbacks of batches sent before), then 404s.
CLOUDAGENT_CALLBACK_SECRET_GRACE_SECONDS = env_int("CLOUDAGENT_CALLBACK_SECRET_GRACE_SECONDS", 48 * 3600)
CLOUDAGENT_CALLBACK_MAX_BYTES = env_int("CLOUDAGENT_CALLBACK_MAX_BYTES", 1024 * 1024)
# A call summary is a flat object of some twenty short fields: a few KB.
CLOUDAGENT_CALL_SUMMARY_MAX_BYTES = env_int("CLOUDAGENT_CALL_SUMMARY_MAX_BYTES", 64 * 1024)
CLOUDAGENT_FAILED_FILE_MAX_BYTES = env_int("CLOUDAGENT_FAILED_FILE_MAX_BYTES", 20 * 1024 * 1024)
CLOUDAGENT_FAILED_FILE_TIMEOUT = env_float("CLOUDAGENT_FAILED_FILE_TIMEOUT", 60)
# Hosts (and their subdomains) a failed-rows file may be fetched from; empty allows any http(s) host.
CLOUDAGENT_FAILED_FILE_HOSTS = [
    h.strip().lower() for h in os.environ.get("CLOUDAGENT_FAILED_FILE_HOSTS", "").split(",") if h.strip()
]
# Networks a failed-rows file may come from although they are private or loopback (e.g. "127.0.0.1/32" for the
# demo's emulator); empty in production, where only public addresses are fetched.
CLOUDAGENT_FETCH_ALLOW_NETWORKS = [
    n.strip() for n in os.environ.get("CLOUDAGENT_FETCH_ALLOW_NETWORKS", "").split(",") if n.strip()
]
# CloudAgent's startDateTime/endDateTime carry no zone.
CLOUDAGENT_TIME_ZONE = os.environ.get("CLOUDAGENT_TIME_ZONE", "Asia/Kolkata")
# Each account is served by one dispatch process at a time, through a lease in the database; a killed
# process's leases lapse after this long and its half-sent batches are recovered.
LEADHUB_DISPATCH_LEASE_SECONDS = env_float("LEADHUB_DISPATCH_LEASE_SECONDS", 30)
# How often a dispatch process looks in the database for accounts with new batches, and renews its leases.
LEADHUB_DISPATCH_POLL_SECONDS = env_float("LEADHUB_DISPATCH_POLL_SECONDS", 1)
# Dispatch processes `run_workers` starts on this machine (`--dispatchers` overrides it).
LEADHUB_DISPATCH_PROCESSES = env_int("LEADHUB_DISPATCH_PROCESSES", 1)
# Sends in flight at once per dispatch process (each send is one HTTP request of up to 500 rows).
LEADHUB_DISPATCH_THREADS = env_int("LEADHUB_DISPATCH_THREADS", 8)
# How often every dispatch process resumes unfinished work found in the database (callbacks, failed files,
# imports) — and the longest a push waits after Redis came back empty.
LEADHUB_WATCHDOG_SECONDS = env_float("LEADHUB_WATCHDOG_SECONDS", 60)
# A push of more leads than this is cut into batches by a background job, so the admin answers at once.
LEADHUB_PUSH_INLINE_LEADS = env_int("LEADHUB_PUSH_INLINE_LEADS", 20_000)
# Imports with more rows than this are confirmed into a background job with a progress bar.
LEADHUB_IMPORT_BACKGROUND_ROWS = env_int("LEADHUB_IMPORT_BACKGROUND_ROWS", 5000)
# An import's stored files (the upload and its rejected rows) are deleted this many days after it is over; 0 keeps
# them forever.
LEADHUB_IMPORT_FILES_KEEP_DAYS = env_int("LEADHUB_IMPORT_FILES_KEEP_DAYS", 30)
# A previewed upload nobody confirmed is deleted after this long.
LEADHUB_IMPORT_PREVIEW_MAX_AGE_SECONDS = env_int("LEADHUB_IMPORT_PREVIEW_MAX_AGE_SECONDS", 6 * 3600)
# A spreadsheet (a lead file or a failed-rows file) is measured before it is read: calamine allocates the bounding
# box of its cells at once (~32 bytes a cell) and aborts the process when it cannot.
LEADHUB_SHEET_MAX_ROWS = env_int("LEADHUB_SHEET_MAX_ROWS", 1_048_576)
LEADHUB_SHEET_MAX_COLUMNS = env_int("LEADHUB_SHEET_MAX_COLUMNS", 200)
LEADHUB_SHEET_MAX_CELLS = env_int("LEADHUB_SHEET_MAX_CELLS", 12_000_000)
# A lead file's cells: longer ones refuse their row (CloudAgent takes 2,000 characters a row, headers included).
LEADHUB_IMPORT_MAX_CELL_CHARS = env_int("LEADHUB_IMPORT_MAX_CELL_CHARS", 2000)
LEADHUB_IMPORT_MAX_JSON_DEPTH = env_int("LEADHUB_IMPORT_MAX_JSON_DEPTH", 32)
LEADHUB_SHEET_MAX_XML_BYTES = env_int("LEADHUB_SHEET_MAX_XML_BYTES", 2 * 1024**3)

if not DEBUG:
    SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", True)
    CSRF_COOKIE_SECURE = env_bool("SECURE_COOKIES", True)
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS")
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD")
    # Only a proxy we run may say a request came over TLS: trusted when nothing else can reach the app.
    if env_bool("LEADHUB_TRUSTED_PROXY_SETS_X_FORWARDED_PROTO"):
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact_secret_paths": {"()": "leadhub.logfilters.RedactSecretPaths"}},
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["redact_secret_paths"]}
    },
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "axes": {"level": "WARNING"},
        # Filters on the loggers that write request paths: a record is redacted where it is made, before
        # Django's own handlers (mail_admins, the runserver console) or any other one sees it.
        "django.request": {"filters": ["redact_secret_paths"]},
        "django.server": {"filters": ["redact_secret_paths"]},
    },
}

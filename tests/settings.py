"""Test settings: production settings with a throwaway key, and a database and Redis db of the run's own (the
tests flush Redis), so two test runs on one machine never trample each other. Set in os.environ so the workers
and servers the tests start as subprocesses inherit them."""

import os

os.environ.setdefault("SECRET_KEY", "test-only-secret-key")
os.environ.setdefault("LEADHUB_FIELD_ENCRYPTION_KEYS", "dGVzdC1vbmx5LWZpZWxkLWVuY3J5cHRpb24ta2V5LTA=")
os.environ.setdefault("REDIS_URL", f"redis://127.0.0.1:6379/{8 + os.getpid() % 8}")

from leadhub.settings import *  # noqa: E402,F403
from leadhub.settings import BASE_DIR, DATABASES  # noqa: E402

_RUN = os.environ.setdefault("LEADHUB_TEST_RUN", str(os.getpid()))
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    DATABASES["default"]["TEST"] = {"NAME": str(BASE_DIR / "var" / f"test-leadhub-{_RUN}.sqlite3")}
else:
    DATABASES["default"]["TEST"] = {"NAME": f"test_leadhub_{_RUN}"}

# The emulator and the loopback file servers speak plain http; tests of the https rule turn this off.
LEADHUB_ALLOW_PLAIN_HTTP = True
# The loopback servers standing in for CloudAgent's file host; tests of the default clear it.
CLOUDAGENT_FETCH_ALLOW_NETWORKS = ["127.0.0.1/32"]

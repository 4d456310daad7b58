"""Test settings: production settings with a throwaway key, and a database and Redis db of the run's own (the
tests flush Redis), so two test runs on one machine never trample each other. Set in os.environ so the workers
and servers the tests start as subprocesses inherit them."""

import atexit
import os

import redis

os.environ.setdefault("SECRET_KEY", "test-only-secret-key")
os.environ.setdefault("LEADHUB_FIELD_ENCRYPTION_KEYS", "dGVzdC1vbmx5LWZpZWxkLWVuY3J5cHRpb24ta2V5LTA=")


def _claim_redis_db() -> int:
    """A Redis db (8-15) no other live test run on this machine holds: the tests flush their db, so two runs
    sharing one would wipe each other's queues and pacer keys. Claims live in db 0, owned by the run's pid, and a
    claim whose process is gone is taken over."""
    claims = redis.Redis(host="127.0.0.1", port=6379, db=0)
    for db in range(8, 16):
        key = f"leadhub:test-run:redis-db:{db}"
        owner = claims.get(key)
        if owner is not None and _alive(int(owner)):
            continue
        if owner is not None:
            claims.delete(key)
        if claims.set(key, os.getpid(), nx=True, ex=6 * 3600):
            atexit.register(claims.delete, key)
            return db
    raise RuntimeError("every Redis test db (8-15) is held by a live test run; wait for one to finish")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


if "REDIS_URL" not in os.environ:
    os.environ["REDIS_URL"] = f"redis://127.0.0.1:6379/{_claim_redis_db()}"

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

"""Test settings: production settings with a throwaway key and a Redis database the tests own (they flush it).
Set in os.environ so the workers and servers the tests start as subprocesses inherit them."""

import os

os.environ.setdefault("SECRET_KEY", "test-only-secret-key")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/15")

from leadhub.settings import *  # noqa: E402,F403

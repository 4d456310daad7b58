"""Shared test fixtures. Each concern keeps its own fixtures in a plugin module under tests/fixtures/."""

pytest_plugins = [
    "tests.fixtures.core",
    "tests.fixtures.emulator",
    "tests.fixtures.ratelimit",
    "tests.fixtures.importing",
    "tests.fixtures.callbacks",
    "tests.fixtures.push",
    "tests.fixtures.dispatch",
    "tests.fixtures.calls",
    "tests.fixtures.browser",
]

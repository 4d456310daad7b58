"""Secrets at rest: a text field stored encrypted with Fernet (AES-128-CBC + HMAC-SHA256), the keys from
LEADHUB_FIELD_ENCRYPTION_KEYS. The first key encrypts, every key decrypts, so a key is rotated by putting the
new one first, running `manage.py reencrypt_secrets`, then dropping the old one.

A database dump, a backup or a read-only SQL user then shows tokens, never a CloudAgent API key. The plaintext
exists only on the model instance; errors raised here never carry it.
"""

from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models

TOKEN_PREFIX = "gAAAAA"  # every Fernet token starts with its version byte and a timestamp: base64 of 0x80 0 0 0 0


class SecretDecryptionError(Exception):
    """A stored secret fits none of the configured keys (a key dropped too early, or the wrong environment)."""


@cache
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    try:
        return MultiFernet([Fernet(key.encode()) for key in keys])
    except (ValueError, TypeError) as exc:
        raise ImproperlyConfigured(
            "LEADHUB_FIELD_ENCRYPTION_KEYS must be Fernet keys (32 url-safe base64 bytes), comma-separated"
        ) from exc


def field_cipher() -> MultiFernet:
    keys = tuple(settings.LEADHUB_FIELD_ENCRYPTION_KEYS)
    if not keys:
        raise ImproperlyConfigured("LEADHUB_FIELD_ENCRYPTION_KEYS is empty")
    return _fernet(keys)


def secret_encrypt(plaintext: str) -> str:
    return field_cipher().encrypt(plaintext.encode()).decode()


def secret_decrypt(token: str) -> str:
    try:
        return field_cipher().decrypt(token.encode()).decode()
    except InvalidToken:
        raise SecretDecryptionError(
            "a stored secret fits none of LEADHUB_FIELD_ENCRYPTION_KEYS (was a key removed too early?)"
        ) from None


def secret_rotate(token: str) -> str:
    """The same secret under the newest key; a token already under it comes back re-encrypted all the same."""
    try:
        return field_cipher().rotate(token.encode()).decode()
    except InvalidToken:
        raise SecretDecryptionError("a stored secret fits none of LEADHUB_FIELD_ENCRYPTION_KEYS") from None


def is_token(value: str) -> bool:
    return value.startswith(TOKEN_PREFIX)


class EncryptedTextField(models.TextField):
    """Plain text in Python, a Fernet token in the database. Not searchable or orderable by value: tokens are
    randomised. Empty stays empty, so `blank` still means something."""

    def from_db_value(self, value, expression, connection):
        if not value:
            return value
        return secret_decrypt(value)

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        if not value:
            return value
        return secret_encrypt(value)

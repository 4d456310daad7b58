"""API keys move from plain text to Fernet tokens (leadhub.fields). The column is widened first, then every
stored key is encrypted in place with raw SQL: the model field would try to decrypt the old plain values."""

from django.db import migrations

import leadhub.fields
from leadhub.fields import is_token, secret_decrypt, secret_encrypt

TABLE = "campaigns_cloudagentaccount"


def _rewrite(schema_editor, change) -> None:
    connection = schema_editor.connection
    table, column, pk = (connection.ops.quote_name(name) for name in (TABLE, "api_key", "id"))
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {pk}, {column} FROM {table}")
        rows = cursor.fetchall()
        for row_id, value in rows:
            new = change(value or "")
            if new != value:
                cursor.execute(f"UPDATE {table} SET {column} = %s WHERE {pk} = %s", [new, row_id])


def encrypt_api_keys(apps, schema_editor):
    _rewrite(schema_editor, lambda value: value if not value or is_token(value) else secret_encrypt(value))


def decrypt_api_keys(apps, schema_editor):
    _rewrite(schema_editor, lambda value: secret_decrypt(value) if value and is_token(value) else value)


class Migration(migrations.Migration):
    dependencies = [
        ("campaigns", "0004_lead_dialling"),
    ]

    operations = [
        migrations.AlterField(
            model_name="cloudagentaccount",
            name="api_key",
            field=leadhub.fields.EncryptedTextField(max_length=200, verbose_name="API key"),
        ),
        migrations.RunPython(encrypt_api_keys, decrypt_api_keys),
    ]

"""Issue 11, finding 5: the callback secret was written to the log on every 400/413/404, and nothing could
rotate it. Now the log shows /cloudagent/<endpoint>/[redacted], and a rotation keeps the old URL answering for
a grace period, then 404."""

import io
import logging
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from campaigns.models import CloudAgentAccount
from campaigns.services import account_callback_secret_rotate
from leadhub.logfilters import redact_secret_paths
from uploads.models import UploadTransaction

pytestmark = pytest.mark.django_db


def url_for(secret: str) -> str:
    return reverse("cloudagent-callback", kwargs={"secret": secret})


@pytest.mark.parametrize(
    "body, status",
    [(b"not json at all", 400), (b"x" * 2048, 413)],
    ids=["malformed", "too-large"],
)
def test_the_secret_never_reaches_the_log(client, account, settings, caplog, body, status):
    settings.CLOUDAGENT_CALLBACK_MAX_BYTES = 1024
    with caplog.at_level(logging.INFO):
        answer = client.post(url_for(account.callback_secret), data=body, content_type="application/json")
    assert answer.status_code == status
    assert caplog.records, "django.request logs the answer"
    assert account.callback_secret not in caplog.text
    assert "/cloudagent/callback/[redacted]" in caplog.text


def test_a_guessed_url_is_not_logged_either(client, account, caplog):
    with caplog.at_level(logging.INFO):
        assert client.post(url_for("a-guess-that-is-long-enough"), data=b"{}", content_type="application/json")
    assert "a-guess-that-is-long-enough" not in caplog.text


@pytest.mark.parametrize(
    "line",
    [
        '"POST /cloudagent/callback/s3cr3t-value/ HTTP/1.1" 400 57',
        "Bad Request: /cloudagent/call-summary/s3cr3t-value/extra",
        "Not Found: /cloudagent/calls/s3cr3t-value",
    ],
)
def test_every_segment_after_a_webhook_prefix_is_redacted(line, caplog):
    for logger in ("django.server", "django.request"):
        with caplog.at_level(logging.INFO):
            logging.getLogger(logger).warning("%s", line)
    assert "s3cr3t-value" not in caplog.text
    assert "s3cr3t-value" not in redact_secret_paths(line)


def test_a_rotated_secret_answers_during_the_grace_period_then_404s(client, account, settings):
    old = account.callback_secret
    settings.CLOUDAGENT_CALLBACK_SECRET_GRACE_SECONDS = 3600
    account = account_callback_secret_rotate(account_id=account.pk)
    assert account.callback_secret != old

    def answer(secret):
        return client.post(url_for(secret), data=b"{}", content_type="application/json").status_code

    assert answer(account.callback_secret) == 400, "the new URL answers (the body is malformed)"
    assert answer(old) == 400, "the old URL still answers within the grace period"
    CloudAgentAccount.objects.filter(pk=account.pk).update(
        previous_callback_secret_until=timezone.now() - timedelta(seconds=1)
    )
    assert answer(old) == 404
    assert answer(account.callback_secret) == 400


def test_rotating_from_the_admin_and_the_command(admin_client, account):
    old = account.callback_secret
    page = admin_client.post(
        reverse("admin:campaigns_cloudagentaccount_changelist"),
        {"action": "rotate_callback_secret", "_selected_action": [account.pk]},
    )
    assert page.status_code == 302
    account.refresh_from_db()
    assert account.callback_secret != old and account.previous_callback_secret == old

    out = io.StringIO()
    call_command("rotate_callback_secret", account.name, stdout=out)
    rotated = CloudAgentAccount.objects.get(pk=account.pk)
    assert rotated.previous_callback_secret == account.callback_secret
    assert rotated.callback_secret not in out.getvalue()


def test_a_rotated_secret_is_not_shown_on_the_transactions_sent_with_it(admin_client, account, campaign):
    old = account.callback_secret
    upload_transaction = UploadTransaction.objects.create(
        campaign=campaign, options={"callBackUrl": f"https://leadhub.example/cloudagent/callback/{old}/"}
    )
    account_callback_secret_rotate(account_id=account.pk)
    page = admin_client.get(reverse("admin:uploads_uploadtransaction_change", args=[upload_transaction.pk]))
    assert page.status_code == 200 and old not in page.content.decode()

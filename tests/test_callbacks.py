"""The callback webhook: every documented shape posted to the real view, and how a callback lands on the
transaction and its leads, whatever order and however often it comes."""

import json
from datetime import datetime, timedelta
from io import StringIO
from zoneinfo import ZoneInfo

import psycopg
import pytest
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from campaigns.models import CloudAgentAccount, Lead
from cloudagent.callbacks import callback_body_parse
from cloudagent.errors import CallbackInvalid
from tests.fixtures.callbacks import SHAPES, callback_body, callback_data, callback_sample, lead_statuses
from uploads import callbacks, queues, selectors, services
from uploads.models import CallbackEvent, UploadTransaction
from uploads.services import failed_file_url_check

pytestmark = pytest.mark.django_db

Event = CallbackEvent.State
Tx = UploadTransaction.State


# --- reading a body ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
def test_every_documented_shape_reads_the_same(shape):
    body, content_type = callback_body(callback_data("129171716445505819319510", numbersNotProcessed="1"), shape)
    data = callback_body_parse(body=body.decode(), content_type=content_type)
    assert (data.transaction_id, data.status, data.numbers_not_processed) == ("129171716445505819319510", "Success", 1)


def test_the_providers_own_sample_is_read_although_its_inner_json_is_not_escaped():
    body = callback_sample("callback_success_partial_no_file_verbatim.txt").decode()
    with pytest.raises(json.JSONDecodeError):
        json.loads(body)
    data = callback_body_parse(body=body, content_type="application/json")
    assert data.transaction_id == "172067852912917131638630"
    assert (data.total_uploaded, data.numbers_processed, data.numbers_not_processed) == (6, 2, 4)
    assert data.failed_file_path == ""


def test_counts_as_padded_strings_numbers_and_floats_and_unknown_fields():
    data = callback_body_parse(
        body=json.dumps(
            {
                "data": callback_data(
                    "1", totalNoUploaded=" 6 ", numbersProcessed=5, numbersNotProcessed="1.0", campaignName="X"
                ),
                "extra": {"nested": True},
            }
        ),
        content_type="",
    )
    assert (data.total_uploaded, data.numbers_processed, data.numbers_not_processed) == (6, 5, 1)
    assert data.raw["campaignName"] == "X"


@pytest.mark.parametrize("value", ["", "xxxx", "-1", "1e3", None])
def test_a_count_that_is_not_a_count_is_unknown_not_an_error(value):
    data = callback_body_parse(
        body=json.dumps({"data": callback_data("1", numbersNotProcessed=value)}), content_type=""
    )
    assert data.numbers_not_processed is None


def test_provider_times_are_indian_time():
    data = callback_body_parse(body=json.dumps({"data": callback_data("1")}), content_type="application/json")
    assert data.started_at == datetime(2024, 7, 11, 11, 45, 29, tzinfo=ZoneInfo("Asia/Kolkata"))
    assert data.finished_at.utcoffset() == timedelta(hours=5, minutes=30)


def test_an_unreadable_time_is_left_empty():
    body = json.dumps({"data": callback_data("1", startDateTime="0000-00-00 00:00:00", endDateTime="")})
    data = callback_body_parse(body=body, content_type="")
    assert (data.started_at, data.finished_at) == (None, None)


@pytest.mark.parametrize(
    "body, says",
    [
        ("", "empty"),
        ("hello", "neither"),
        ("{not json", "not valid JSON"),
        ('{"other": 1}', 'no "data"'),
        ('{"data": 5}', "not a JSON object"),
        ('{"data": "not json"}', "not valid JSON"),
        ("data=", "not valid JSON"),
        ('{"data": {"transactionId": "1", "status": "Success", "n": NaN}}', "not valid JSON"),
        ('{"data": {"transactionId": "1", "status": "Success", "totalNoUploaded": 1e400}}', "out of range"),
        ('{"data": {"status": "Success"}}', "no transactionId"),
        ('{"data": {"transactionId": "12 34", "status": "Success"}}', "not a CloudAgent transactionId"),
        ('{"data": {"transactionId": "' + "1" * 41 + '", "status": "Success"}}', "not a CloudAgent transactionId"),
        ('{"data": {"transactionId": "1", "status": "Pending"}}', "neither"),
        ('{"data": ' + "[" * 100_000, "nests deeper than 32 levels"),
        ("[1, 2]", 'no "data"'),
    ],
)
def test_malformed_bodies_are_refused_with_a_reason(body, says):
    with pytest.raises(CallbackInvalid, match=says):
        callback_body_parse(body=body, content_type="application/json")


@pytest.mark.parametrize(
    "url, fine",
    [
        ("https://s3.ap-south-1.amazonaws.com/b/f.csv?X-Amz-Signature=x", True),
        ("http://127.0.0.1:9/f.xlsx", True),
        ("ftp://files.example/f.csv", False),
        ("file:///etc/passwd", False),
        ("javascript:alert(1)", False),
        ("https:///no-host", False),
        ("/relative/path.csv", False),
        ("https://x.example/" + "a" * 4000, False),
    ],
)
def test_only_http_urls_to_a_host_are_fetched(url, fine):
    assert (failed_file_url_check(url) == "") is fine


# --- the endpoint ------------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_with_the_database_gone_the_callback_is_answered_503_with_retry_after(client, account, callback_url):
    """The connection a request would use is dropped (as a PostgreSQL restart does): the sender is told to come
    back, not handed a 500."""
    if connection.vendor != "postgresql":
        pytest.skip("pg_terminate_backend is PostgreSQL's")
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (pid,) = cursor.fetchone()
    db = connection.settings_dict
    with psycopg.connect(
        dbname=db["NAME"], host=db["HOST"], port=db["PORT"] or 5432, user=db["USER"], autocommit=True
    ) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [pid])

    response = client.post(callback_url, data=b"{}", content_type="application/json")

    assert response.status_code == 503 and response.headers["Retry-After"] == "30"
    assert client.post(callback_url, data=b"{}", content_type="application/json").status_code == 400, "back"


def test_an_unknown_secret_is_404_and_stores_nothing(client, account):
    url = reverse("cloudagent-callback", kwargs={"secret": account.callback_secret[:-1] + "x"})
    response = client.post(url, data=b"{}", content_type="application/json")
    assert response.status_code == 404
    assert response.json() == {"error": "unknown callback URL"}
    assert not CallbackEvent.objects.exists()


def test_only_post_is_allowed(client, callback_url):
    assert client.get(callback_url).status_code == 405
    assert client.put(callback_url, data=b"{}").status_code == 405
    assert not CallbackEvent.objects.exists()


def test_no_csrf_token_is_needed(account, callback_url, make_upload_transaction):
    upload_transaction = make_upload_transaction()
    body, content_type = callback_body(callback_data(upload_transaction.transaction_id), "form")
    response = Client(enforce_csrf_checks=True).post(callback_url, data=body, content_type=content_type)
    assert response.status_code == 200


def test_a_body_over_the_cap_is_413_before_it_is_read(post_callback, settings):
    settings.CLOUDAGENT_CALLBACK_MAX_BYTES = 1000
    response = post_callback(b'{"data": "' + b"x" * 1000 + b'"}')
    assert response.status_code == 413
    assert "1000 bytes" in response.json()["error"]
    assert not CallbackEvent.objects.exists()


def test_a_malformed_body_is_a_400_and_is_kept_for_inspection(post_callback, account):
    response = post_callback(b'{"data": {"transactionId": "1"', "application/json")
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["error"]
    event = CallbackEvent.objects.get()
    assert (event.state, event.account, event.body) == (Event.INVALID, account, '{"data": {"transactionId": "1"')
    assert event.error == response.json()["error"]


@pytest.mark.parametrize(
    "body, stored",
    [(b'{"data": "\xff\xfe"}', '{"data": "\\xff\\xfe"}'), (b'{"data": "a\x00b"}', '{"data": "a\\x00b"}')],
)
def test_bytes_no_database_can_hold_are_stored_escaped_and_refused(post_callback, body, stored):
    response = post_callback(body)
    assert response.status_code == 400
    event = CallbackEvent.objects.get()
    assert (event.state, event.body) == (Event.INVALID, stored)


def test_escaped_nul_and_lone_surrogates_inside_the_json_are_stored_cleaned(post_callback, make_upload_transaction):
    upload_transaction = make_upload_transaction()
    body = json.dumps({"data": callback_data(upload_transaction.transaction_id, message="ok\u0000\ud800")})
    assert post_callback(body).status_code == 200
    upload_transaction.refresh_from_db()
    assert upload_transaction.callback["message"] == "ok?"


def test_the_raw_request_is_stored_as_it_came(post_callback, account, make_upload_transaction):
    upload_transaction = make_upload_transaction()
    body, content_type = callback_body(callback_data(upload_transaction.transaction_id), "form")
    before = timezone.now()
    response = post_callback(body, content_type)
    assert response.status_code == 200
    event = CallbackEvent.objects.get()
    assert response.json() == {"status": "applied", "event": event.pk}
    assert event.body == body.decode()
    assert event.content_type == content_type
    assert event.remote_addr == "203.0.113.7"
    assert event.received_at >= before
    assert (event.account, event.upload_transaction, event.transaction_id) == (
        account,
        upload_transaction,
        upload_transaction.transaction_id,
    )


# --- applying ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
def test_success_with_nothing_unprocessed_uploads_every_lead(post_callback, make_upload_transaction, shape):
    upload_transaction = make_upload_transaction(3)
    response = post_callback(*callback_body(callback_data(upload_transaction.transaction_id), shape))
    assert response.status_code == 200
    upload_transaction.refresh_from_db()
    assert upload_transaction.state == Tx.COMPLETED
    assert (upload_transaction.total_uploaded, upload_transaction.numbers_processed) == (3, 3)
    assert upload_transaction.numbers_not_processed == 0
    assert upload_transaction.provider_finished_at == datetime(2024, 7, 11, 6, 15, 54, tzinfo=ZoneInfo("UTC"))
    assert upload_transaction.finished_at is not None and upload_transaction.attention == ""
    assert upload_transaction.callback["transactionId"] == upload_transaction.transaction_id
    assert set(lead_statuses(upload_transaction).values()) == {Lead.Status.UPLOADED}


@pytest.mark.smoke
@pytest.mark.parametrize(
    "sample, transaction_id, leads, tx_state, lead_status, attention",
    [
        ("callback_success.json", "1292017169670681719733108", 3, Tx.COMPLETED, "uploaded", ""),
        ("callback_fail.json", "1292017169670681719733108", 3, Tx.FAILED, "failed", ""),
        ("callback_fail_map_mismatch.json", "129861716888265726411532", 3, Tx.FAILED, "failed", ""),
        ("callback_success_partial_no_file.json", "172067852912917131638630", 6, Tx.COMPLETED, "unconfirmed", "4 of 6"),
        (
            "callback_success_partial_no_file_verbatim.txt",
            "172067852912917131638630",
            6,
            Tx.COMPLETED,
            "unconfirmed",
            "4 of 6",
        ),
        ("webhook_doc_success_padded.json", "1292017169670681719733108", 3, Tx.COMPLETED, "uploaded", ""),
        ("webhook_success_form.txt", "1292017169670681719733108", 3, Tx.COMPLETED, "uploaded", ""),
        ("webhook_doc_fail_map_mismatch_json_string.json", "129861716888265726411532", 3, Tx.FAILED, "failed", ""),
    ],
)
def test_the_documented_samples_posted_verbatim(
    post_callback, make_upload_transaction, sample, transaction_id, leads, tx_state, lead_status, attention
):
    upload_transaction = make_upload_transaction(leads, transaction_id=transaction_id)
    content_type = "application/x-www-form-urlencoded" if sample.endswith("form.txt") else "application/json"
    response = post_callback(callback_sample(sample), content_type)
    assert response.status_code == 200, response.content
    upload_transaction.refresh_from_db()
    assert upload_transaction.state == tx_state
    assert set(lead_statuses(upload_transaction).values()) == {lead_status}
    assert attention in upload_transaction.attention
    assert bool(upload_transaction.attention) is bool(attention)


def test_success_naming_a_failed_file_enqueues_its_download_and_leaves_the_leads_sent(
    post_callback, make_upload_transaction, callbacks_queue, django_capture_on_commit_callbacks
):
    upload_transaction = make_upload_transaction(6, transaction_id="172067852912917131638630")
    with django_capture_on_commit_callbacks(execute=True):
        response = post_callback(callback_sample("webhook_doc_success_failed_file.json"))
    assert response.status_code == 200
    upload_transaction.refresh_from_db()
    assert upload_transaction.state == Tx.COMPLETED
    assert upload_transaction.failed_file_url.startswith("https://files.example.invalid/failed/")
    assert set(lead_statuses(upload_transaction).values()) == {Lead.Status.SENT}
    (job,) = callbacks_queue.get_jobs()
    assert job.func_name == "uploads.jobs.failed_file_fetch_job"
    assert job.args == (upload_transaction.pk,)
    assert job.retries_left == queues.FAILED_FILE_RETRY.max


def test_fail_fails_every_lead_with_cloudagents_message(post_callback, make_upload_transaction):
    upload_transaction = make_upload_transaction(3)
    data = callback_data(upload_transaction.transaction_id, status=" Fail ", message="File Failed to Upload.")
    assert post_callback(*callback_body(data)).status_code == 200
    upload_transaction.refresh_from_db()
    assert upload_transaction.state == Tx.FAILED
    reasons = set(upload_transaction.leads.values_list("status", "status_reason"))
    assert reasons == {(Lead.Status.FAILED, "CloudAgent refused the batch: File Failed to Upload.")}


@pytest.mark.parametrize(
    "counts, says",
    [
        ({"numbersNotProcessed": "2"}, "did not process 2 of 3"),
        ({"totalNoUploaded": "", "numbersProcessed": "", "numbersNotProcessed": ""}, "no usable counts"),
        ({"numbersProcessed": "1", "numbersNotProcessed": "0"}, "counts disagree"),
        ({"totalNoUploaded": "2", "numbersProcessed": "2"}, "counted 2 rows of the 3 sent"),
        ({"numbersNotProcessed": "", "numbersProcessed": "2"}, "did not process 1 of 3"),
        ({"failedFilePath": "ftp://files.example/f.csv", "numbersNotProcessed": "1"}, "scheme 'ftp'"),
    ],
)
def test_a_success_that_does_not_prove_every_lead_arrived_leaves_them_unconfirmed(
    post_callback, make_upload_transaction, callbacks_queue, django_capture_on_commit_callbacks, counts, says
):
    upload_transaction = make_upload_transaction(3)
    with django_capture_on_commit_callbacks(execute=True):
        post_callback(*callback_body(callback_data(upload_transaction.transaction_id, **counts)))
    upload_transaction.refresh_from_db()
    assert upload_transaction.state == Tx.COMPLETED
    assert says in upload_transaction.attention
    assert set(lead_statuses(upload_transaction).values()) == {Lead.Status.UNCONFIRMED}
    assert upload_transaction.failed_file_url == ""
    assert callbacks_queue.count == 0


def test_counts_missing_but_all_processed_is_a_success(post_callback, make_upload_transaction):
    upload_transaction = make_upload_transaction(3)
    post_callback(*callback_body(callback_data(upload_transaction.transaction_id, numbersNotProcessed=None)))
    assert set(lead_statuses(upload_transaction).values()) == {Lead.Status.UPLOADED}


def test_only_leads_still_in_flight_move(post_callback, make_upload_transaction):
    upload_transaction = make_upload_transaction(3)
    first, second, third = upload_transaction.leads.order_by("id")
    Lead.objects.filter(pk=first.pk).update(status=Lead.Status.INVALID, status_reason="our check")
    Lead.objects.filter(pk=second.pk).update(status=Lead.Status.QUEUED)
    post_callback(*callback_body(callback_data(upload_transaction.transaction_id)))
    statuses = dict(upload_transaction.leads.values_list("pk", "status"))
    assert statuses == {first.pk: "invalid", second.pk: "uploaded", third.pk: "uploaded"}


def test_a_lead_moved_to_another_batch_is_not_touched(post_callback, make_upload_transaction):
    old, new = make_upload_transaction(2), make_upload_transaction(1)
    moved = old.leads.first()
    Lead.objects.filter(pk=moved.pk).update(upload_transaction=new)
    post_callback(*callback_body(callback_data(old.transaction_id, status="Fail")))
    assert Lead.objects.get(pk=moved.pk).status == Lead.Status.SENT


@pytest.mark.parametrize("state", [Tx.PENDING, Tx.SENDING])
def test_a_transaction_our_worker_has_not_marked_queued_yet_is_applied(post_callback, make_upload_transaction, state):
    upload_transaction = make_upload_transaction(2, state=state, lead_status=Lead.Status.QUEUED)
    post_callback(*callback_body(callback_data(upload_transaction.transaction_id, rows=2)))
    upload_transaction.refresh_from_db()
    assert upload_transaction.state == Tx.COMPLETED
    assert set(lead_statuses(upload_transaction).values()) == {Lead.Status.UPLOADED}


@pytest.mark.smoke
def test_the_same_callback_twice_changes_nothing_the_second_time(post_callback, make_upload_transaction):
    upload_transaction = make_upload_transaction(3)
    body, content_type = callback_body(callback_data(upload_transaction.transaction_id, numbersNotProcessed="1"))
    assert post_callback(body, content_type).json()["status"] == "applied"
    upload_transaction.refresh_from_db()
    leads_before = list(upload_transaction.leads.values_list("id", "status", "status_reason", "updated_at"))
    response = post_callback(body, content_type)
    assert response.status_code == 200 and response.json()["status"] == "ignored"
    second = CallbackEvent.objects.get(pk=response.json()["event"])
    assert "already completed" in second.error and second.upload_transaction == upload_transaction
    after = UploadTransaction.objects.get(pk=upload_transaction.pk)
    assert (after.updated_at, after.finished_at, after.attention) == (
        upload_transaction.updated_at,
        upload_transaction.finished_at,
        upload_transaction.attention,
    )
    assert list(upload_transaction.leads.values_list("id", "status", "status_reason", "updated_at")) == leads_before


def test_a_fail_after_a_success_does_not_move_the_transaction_backwards(post_callback, make_upload_transaction):
    upload_transaction = make_upload_transaction(3)
    post_callback(*callback_body(callback_data(upload_transaction.transaction_id)))
    response = post_callback(*callback_body(callback_data(upload_transaction.transaction_id, status="Fail")))
    assert response.json()["status"] == "ignored"
    upload_transaction.refresh_from_db()
    assert upload_transaction.state == Tx.COMPLETED
    assert upload_transaction.callback["status"] == "Success"
    assert set(lead_statuses(upload_transaction).values()) == {Lead.Status.UPLOADED}


def test_a_callback_for_a_refused_request_is_ignored(post_callback, make_upload_transaction):
    upload_transaction = make_upload_transaction(1, state=Tx.ERROR, lead_status=Lead.Status.FAILED)
    response = post_callback(*callback_body(callback_data(upload_transaction.transaction_id)))
    assert response.json()["status"] == "ignored"
    assert set(lead_statuses(upload_transaction).values()) == {Lead.Status.FAILED}


def test_a_callback_on_one_accounts_url_cannot_touch_another_accounts_transaction(
    client, make_upload_transaction, account
):

    other = CloudAgentAccount.objects.create(name="Other", user_name="o", api_key="k")
    upload_transaction = make_upload_transaction(1)
    url = reverse("cloudagent-callback", kwargs={"secret": other.callback_secret})
    body, content_type = callback_body(callback_data(upload_transaction.transaction_id, status="Fail"))
    response = client.post(url, data=body, content_type=content_type)
    assert response.json()["status"] == "ignored"
    assert "another account" in CallbackEvent.objects.get().error
    upload_transaction.refresh_from_db()
    assert upload_transaction.state == Tx.QUEUED


@pytest.mark.smoke
def test_a_callback_before_the_transaction_id_is_stored_waits_and_is_applied_when_it_is(
    post_callback, make_upload_transaction
):
    upload_transaction = make_upload_transaction(3, transaction_id=None, state=Tx.SENDING, lead_status="queued")
    UploadTransaction.objects.filter(pk=upload_transaction.pk).update(transaction_id=None)
    body, content_type = callback_body(callback_data("129171716445505819319510"), "json-string")
    response = post_callback(body, content_type)
    assert response.status_code == 200 and response.json()["status"] == "waiting"
    event = CallbackEvent.objects.get()
    assert (event.state, event.transaction_id, event.upload_transaction) == (
        Event.WAITING,
        "129171716445505819319510",
        None,
    )
    assert set(lead_statuses(upload_transaction).values()) == {Lead.Status.QUEUED}

    # The push records the answer, commits, then asks for waiting callbacks; a duplicate that also waited
    # is ignored.
    post_callback(body, content_type)
    UploadTransaction.objects.filter(pk=upload_transaction.pk).update(
        transaction_id="129171716445505819319510", state=Tx.QUEUED
    )
    Lead.objects.filter(upload_transaction=upload_transaction).update(status=Lead.Status.SENT)
    upload_transaction.refresh_from_db()
    applied = services.callback_events_apply_waiting(upload_transaction=upload_transaction)
    assert [e.state for e in applied] == [Event.APPLIED, Event.IGNORED]
    upload_transaction.refresh_from_db()
    assert upload_transaction.state == Tx.COMPLETED
    assert set(lead_statuses(upload_transaction).values()) == {Lead.Status.UPLOADED}
    assert services.callback_events_apply_waiting(upload_transaction=upload_transaction) == []


def test_the_view_looks_again_when_the_transaction_id_lands_while_it_applies(
    post_callback, make_upload_transaction, monkeypatch
):
    """The push commits the transactionId after the view looked for it but before the view committed
    `waiting`: the push sees no waiting event, so the view's second look must find the transaction."""
    upload_transaction = make_upload_transaction(2, state=Tx.SENDING)
    real_transaction_id = upload_transaction.transaction_id
    UploadTransaction.objects.filter(pk=upload_transaction.pk).update(transaction_id=None)
    settle = services._event_settle

    def settle_then_push_commits(event, state, **fields):
        result = settle(event, state, **fields)
        if state == Event.WAITING:
            UploadTransaction.objects.filter(pk=upload_transaction.pk).update(transaction_id=real_transaction_id)
        return result

    monkeypatch.setattr(services, "_event_settle", settle_then_push_commits)
    response = post_callback(*callback_body(callback_data(real_transaction_id, rows=2)))
    assert response.json()["status"] == "applied"
    assert set(lead_statuses(upload_transaction).values()) == {Lead.Status.UPLOADED}


def test_a_failure_of_ours_while_applying_is_a_202_and_the_sweep_applies_it_later(
    post_callback, make_upload_transaction, monkeypatch
):
    upload_transaction = make_upload_transaction(2)

    def broken(*args, **kwargs):
        raise RuntimeError("database hiccup")

    monkeypatch.setattr(services, "_upload_transaction_finish", broken)
    response = post_callback(*callback_body(callback_data(upload_transaction.transaction_id, rows=2)))
    assert response.status_code == 202 and response.json()["status"] == "received"
    monkeypatch.undo()
    assert CallbackEvent.objects.get().state == Event.RECEIVED

    assert callbacks.callback_events_sweep()["still_waiting"] == 0  # too fresh: the view may still be at it
    assert CallbackEvent.objects.get().state == Event.RECEIVED
    CallbackEvent.objects.update(received_at=timezone.now() - timedelta(minutes=5))
    out = StringIO()
    call_command("apply_waiting_callbacks", stdout=out)
    assert "applied: 1" in out.getvalue()
    assert set(lead_statuses(upload_transaction).values()) == {Lead.Status.UPLOADED}


def test_the_sweep_applies_waiting_callbacks_whose_transaction_is_now_known(post_callback, make_upload_transaction):
    post_callback(*callback_body(callback_data("129171716445505819319510")))
    post_callback(*callback_body(callback_data("999999999999999999999999")))
    upload_transaction = make_upload_transaction(3, transaction_id="129171716445505819319510")
    counts = callbacks.callback_events_sweep()
    assert counts == {"applied": 1, "still_waiting": 1}
    assert set(lead_statuses(upload_transaction).values()) == {Lead.Status.UPLOADED}


def test_the_sweep_enqueues_a_failed_file_download_that_never_got_queued(
    make_upload_transaction, callbacks_queue, django_capture_on_commit_callbacks
):
    upload_transaction = make_upload_transaction(
        2,
        state=Tx.COMPLETED,
        failed_file_url="https://files.example.invalid/f.csv",
        finished_at=timezone.now() - timedelta(minutes=10),
    )
    make_upload_transaction(
        1, state=Tx.COMPLETED, failed_file_url="https://x.example/f.csv", finished_at=timezone.now()
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert callbacks.callback_events_sweep() == {"failed_files_enqueued": 1, "still_waiting": 0}
    with django_capture_on_commit_callbacks(execute=True):
        assert callbacks.callback_events_sweep() == {"still_waiting": 0}  # the job still waits: left alone
    assert [job.args for job in callbacks_queue.get_jobs()] == [(upload_transaction.pk,)]


def test_overdue_transactions_are_those_queued_without_a_callback_for_too_long(make_upload_transaction, settings):
    settings.CLOUDAGENT_CALLBACK_OVERDUE_SECONDS = 600
    late = make_upload_transaction(1, sent_at=timezone.now() - timedelta(minutes=11))
    make_upload_transaction(1, sent_at=timezone.now() - timedelta(minutes=9))
    make_upload_transaction(1, state=Tx.COMPLETED, sent_at=timezone.now() - timedelta(hours=2))
    no_send_time = make_upload_transaction(1, sent_at=None)
    UploadTransaction.objects.filter(pk=no_send_time.pk).update(created_at=timezone.now() - timedelta(hours=1))
    assert set(selectors.upload_transactions_overdue()) == {late, no_send_time}

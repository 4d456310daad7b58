"""The failed file a partial Success points to: downloaded by a job on the real "callbacks" queue from a real
loopback HTTP server, kept, read (CSV or XLSX), and matched to the transaction's leads by number."""

import io
import socket
from datetime import timedelta

import openpyxl
import pytest
from django.utils import timezone
from rq.registry import ScheduledJobRegistry

from campaigns.models import Lead
from cloudagent.client import USER_AGENT
from cloudagent.failed_files import failed_file_read
from tests.fixtures.callbacks import callback_body, callback_data, lead_statuses
from uploads import queues, services
from uploads.models import UploadTransaction
from uploads.services import FailedFileRetry, failed_file_fetch, failed_file_url_check

pytestmark = pytest.mark.django_db

DND = "PhoneNumber Added is a DND Number"
EXISTS = "Number Already Exist"


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    return tmp_path


@pytest.fixture
def completed(make_upload_transaction):
    """A transaction whose Success callback named a failed file, its leads still `sent`."""

    def make(url: str, *, leads: int = 5, not_processed: int = 2, **fields) -> UploadTransaction:
        now = timezone.now()
        fields = {"finished_at": now, "provider_finished_at": now, **fields}
        return make_upload_transaction(
            leads,
            state=UploadTransaction.State.COMPLETED,
            failed_file_url=url,
            numbers_not_processed=not_processed,
            **fields,
        )

    return make


def national(upload_transaction: UploadTransaction) -> list[str]:
    """The transaction's numbers as the push sends them for an IN campaign: 10 national digits."""
    return [phone[3:] for phone in upload_transaction.leads.order_by("id").values_list("phone_number", flat=True)]


def xlsx(rows: list[list]) -> bytes:
    workbook = openpyxl.Workbook()
    for row in rows:
        workbook.active.append(row)
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def test_the_failed_file_is_fetched_as_the_api_client_with_its_user_agent(completed, file_server):
    upload_transaction = completed(file_server.serve("/f.csv", b"PhoneNumber,Reason\n"))

    failed_file_fetch(upload_transaction=upload_transaction)

    assert file_server.user_agents == [USER_AGENT]


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/failed.csv"


@pytest.mark.smoke
def test_a_partial_success_marks_the_named_leads_failed_and_the_rest_uploaded(
    post_callback,
    make_upload_transaction,
    file_server,
    run_callbacks_jobs,
    callbacks_queue,
    django_capture_on_commit_callbacks,
):
    upload_transaction = make_upload_transaction(5)
    phones = national(upload_transaction)
    content = f"PhoneNumber,Name,Reason\n{phones[1]},Lead 1,{DND}\n{phones[3]},Lead 3,{EXISTS}\n".encode()
    url = file_server.serve("/bucket/failed-1.csv", content)
    data = callback_data(upload_transaction.transaction_id, rows=5, numbersProcessed="3", numbersNotProcessed="2")
    data["failedFilePath"] = f"  {url} "
    with django_capture_on_commit_callbacks(execute=True):
        assert post_callback(*callback_body(data, "json-string")).status_code == 200
    assert callbacks_queue.count == 1

    run_callbacks_jobs()

    assert callbacks_queue.failed_job_registry.count == 0
    upload_transaction.refresh_from_db()
    assert upload_transaction.failed_file_url == url
    assert upload_transaction.failed_file.name.endswith(f"{upload_transaction.transaction_id}-failed.csv")
    assert upload_transaction.failed_file.read() == content
    assert upload_transaction.attention == ""
    reasons = dict(upload_transaction.leads.values_list("phone_number", "status_reason"))
    statuses = lead_statuses(upload_transaction)
    assert [statuses["+91" + p] for p in phones] == ["uploaded", "failed", "uploaded", "failed", "uploaded"]
    assert (reasons["+91" + phones[1]], reasons["+91" + phones[3]]) == (DND, EXISTS)


def test_an_xlsx_with_a_title_row_aliased_headers_numeric_cells_and_country_codes(completed, file_server):
    upload_transaction = completed("placeholder")
    phones = national(upload_transaction)
    content = xlsx(
        [
            ["Failed records for transaction"],
            ["Name", "Mobile Number", "Failure Reason"],
            ["Lead 0", int(phones[0]), DND],
            ["Lead 2", "91" + phones[2], None],
        ]
    )
    url = file_server.serve("/f.xlsx", content, Content_Type="application/vnd.ms-excel")
    UploadTransaction.objects.filter(pk=upload_transaction.pk).update(failed_file_url=url)
    assert failed_file_fetch(upload_transaction=upload_transaction) == (
        "2 leads failed, 3 uploaded (2 rows in the failed file, phone column 'Mobile Number', "
        "reason column 'Failure Reason')"
    )
    upload_transaction.refresh_from_db()
    assert upload_transaction.failed_file.name.endswith(".xlsx")
    leads = list(upload_transaction.leads.order_by("id").values_list("status", "status_reason"))
    assert leads == [
        ("failed", DND),
        ("uploaded", ""),
        ("failed", services.GENERIC_FAILED_REASON),
        ("uploaded", ""),
        ("uploaded", ""),
    ]


def test_a_semicolon_csv_without_a_reason_column_gets_the_generic_reason(completed, file_server):
    upload_transaction = completed("placeholder", not_processed=1)
    phones = national(upload_transaction)
    url = file_server.serve("/f.csv", f"\ufeffphone_number;name\n{phones[4]};Lead 4\n".encode())
    UploadTransaction.objects.filter(pk=upload_transaction.pk).update(failed_file_url=url)
    failed_file_fetch(upload_transaction=upload_transaction)
    failed = upload_transaction.leads.filter(status=Lead.Status.FAILED)
    assert list(failed.values_list("phone_number", "status_reason")) == [
        ("+91" + phones[4], services.GENERIC_FAILED_REASON)
    ]
    assert upload_transaction.leads.filter(status=Lead.Status.UPLOADED).count() == 4


def test_rows_matching_no_lead_and_counts_that_disagree_are_flagged(completed, file_server):
    upload_transaction = completed("placeholder", not_processed=3)
    phones = national(upload_transaction)
    content = f"PhoneNumber,Reason\n{phones[0]},{DND}\n9000000001,{DND}\nnot a number,x\n".encode()
    url = file_server.serve("/f.csv", content)
    UploadTransaction.objects.filter(pk=upload_transaction.pk).update(failed_file_url=url)
    failed_file_fetch(upload_transaction=upload_transaction)
    upload_transaction.refresh_from_db()
    assert "2 rows of the failed file match none" in upload_transaction.attention
    assert "counted 3 rows not processed, its failed file named 1" in upload_transaction.attention
    assert upload_transaction.leads.filter(status=Lead.Status.FAILED).count() == 1


@pytest.mark.parametrize(
    "status, content, headers, says",
    [
        (403, b"<Error>Request has expired</Error>", {}, "HTTP 403 (expired or refused)"),
        (404, b"", {}, "HTTP 404"),
        (200, b"<html><body>Sign in</body></html>", {"Content_Type": "text/html"}, "no phone number column"),
        (200, b"PK\x03\x04 not really a zip", {}, "not a spreadsheet we can read"),
        (200, b"", {}, "no phone number column (headers: none"),
        (302, b"", {"Location": "file:///etc/passwd"}, "redirects to a URL refused: scheme 'file'"),
    ],
)
def test_a_file_that_cannot_be_had_or_read_leaves_the_leads_unconfirmed_and_says_why(
    completed, file_server, status, content, headers, says
):
    upload_transaction = completed(file_server.serve("/f", content, status=status, **headers))
    failed_file_fetch(upload_transaction=upload_transaction)
    upload_transaction.refresh_from_db()
    assert says in upload_transaction.attention
    assert upload_transaction.attention.endswith("leads marked unconfirmed")
    assert set(lead_statuses(upload_transaction).values()) == {Lead.Status.UNCONFIRMED}
    assert bool(upload_transaction.failed_file) is (status == 200)  # what did arrive is kept for inspection


def test_a_file_over_the_size_cap_is_refused(completed, file_server, settings):
    settings.CLOUDAGENT_FAILED_FILE_MAX_BYTES = 100
    upload_transaction = completed(file_server.serve("/big.csv", b"PhoneNumber\n" + b"9812345678\n" * 20))
    failed_file_fetch(upload_transaction=upload_transaction)
    upload_transaction.refresh_from_db()
    assert "over the 100-byte cap" in upload_transaction.attention
    assert not upload_transaction.failed_file
    assert set(lead_statuses(upload_transaction).values()) == {Lead.Status.UNCONFIRMED}


def test_a_url_that_is_not_http_is_never_fetched(completed):
    upload_transaction = completed("file:///etc/passwd")
    failed_file_fetch(upload_transaction=upload_transaction)
    upload_transaction.refresh_from_db()
    assert "scheme 'file' is not http(s)" in upload_transaction.attention
    assert set(lead_statuses(upload_transaction).values()) == {Lead.Status.UNCONFIRMED}


def test_only_the_allowed_hosts_are_fetched_from_when_some_are_named(completed, file_server, settings):
    content = b"PhoneNumber,Reason\n"
    settings.CLOUDAGENT_FAILED_FILE_HOSTS = ["files.ozonetel.example"]
    refused = completed(file_server.serve("/f.csv", content))
    failed_file_fetch(upload_transaction=refused)
    refused.refresh_from_db()
    assert "host '127.0.0.1' is not in CLOUDAGENT_FAILED_FILE_HOSTS" in refused.attention
    assert file_server.requests == [], "nothing was fetched"

    settings.CLOUDAGENT_FAILED_FILE_HOSTS = ["0.0.1"]  # an address is matched whole, never as a suffix
    refused = completed(file_server.serve("/g.csv", content))
    failed_file_fetch(upload_transaction=refused)
    assert file_server.requests == []

    settings.CLOUDAGENT_FAILED_FILE_HOSTS = ["example.net", "127.0.0.1"]
    allowed = completed(file_server.serve("/h.csv", content))
    failed_file_fetch(upload_transaction=allowed)
    assert len(file_server.requests) == 1


@pytest.mark.parametrize(
    "host, allowed, matches",
    [
        ("files.cloudagent.example", "cloudagent.example", True),
        ("cloudagent.example", "cloudagent.example", True),
        ("evilcloudagent.example", "cloudagent.example", False),
        ("10.0.0.1", "0.0.1", False),
    ],
)
def test_allowed_hosts_cover_subdomains_of_names_only(settings, host, allowed, matches):
    settings.CLOUDAGENT_FAILED_FILE_HOSTS = [allowed]
    assert (failed_file_url_check(f"https://{host}/f.csv") == "") is matches


@pytest.mark.parametrize("broken", ["unreachable", "503"])
def test_a_transient_failure_is_retried_while_the_url_is_valid(
    completed, file_server, broken, callbacks_queue, run_callbacks_jobs, django_capture_on_commit_callbacks
):
    url = closed_port_url() if broken == "unreachable" else file_server.serve("/f.csv", b"busy", status=503)
    upload_transaction = completed(url)
    with pytest.raises(FailedFileRetry):
        failed_file_fetch(upload_transaction=upload_transaction)
    assert set(lead_statuses(upload_transaction).values()) == {Lead.Status.SENT}

    with django_capture_on_commit_callbacks(execute=True):
        queues.failed_file_fetch_enqueue(upload_transaction_id=upload_transaction.pk)
    run_callbacks_jobs()
    (job_id,) = ScheduledJobRegistry(queue=callbacks_queue).get_job_ids()
    job = callbacks_queue.fetch_job(job_id)
    assert job.retries_left == queues.FAILED_FILE_RETRY.max - 1
    assert set(lead_statuses(upload_transaction).values()) == {Lead.Status.SENT}


def test_a_transient_failure_after_the_urls_24_hours_gives_up(completed):
    day_ago = timezone.now() - timedelta(hours=24, minutes=1)
    upload_transaction = completed(closed_port_url(), provider_finished_at=day_ago)
    failed_file_fetch(upload_transaction=upload_transaction)
    upload_transaction.refresh_from_db()
    assert "its URL has now expired" in upload_transaction.attention
    assert set(lead_statuses(upload_transaction).values()) == {Lead.Status.UNCONFIRMED}


def test_the_retry_schedule_outlasts_the_urls_life():
    """So the last attempt always finds the URL expired and settles the leads instead of leaving them sent."""
    retry = queues.FAILED_FILE_RETRY
    waits = [retry.intervals[min(i, len(retry.intervals) - 1)] for i in range(retry.max)]
    assert sum(waits) > services.FAILED_FILE_URL_TTL.total_seconds()


def test_fetching_again_changes_nothing_and_reuses_the_stored_copy(completed, file_server):
    upload_transaction = completed("placeholder")
    phones = national(upload_transaction)
    url = file_server.serve("/f.csv", f"PhoneNumber,Reason\n{phones[0]},{DND}\n".encode())
    UploadTransaction.objects.filter(pk=upload_transaction.pk).update(failed_file_url=url)
    failed_file_fetch(upload_transaction=upload_transaction)
    before = list(upload_transaction.leads.values_list("id", "status", "updated_at"))
    assert failed_file_fetch(upload_transaction=upload_transaction) == "every lead is already settled"
    assert list(upload_transaction.leads.values_list("id", "status", "updated_at")) == before

    # A lead still open (say the push moved one back to sent by hand) is settled from the stored copy.
    Lead.objects.filter(pk=before[0][0]).update(status=Lead.Status.SENT)
    file_server.answers.clear()
    failed_file_fetch(upload_transaction=upload_transaction)
    assert len(file_server.requests) == 1
    assert Lead.objects.get(pk=before[0][0]).status != Lead.Status.SENT


def test_a_fail_callback_naming_a_file_does_not_fetch_it(
    post_callback, make_upload_transaction, callbacks_queue, django_capture_on_commit_callbacks
):
    upload_transaction = make_upload_transaction(2)
    data = callback_data(upload_transaction.transaction_id, status="Fail", failedFilePath="https://x.example/f.csv")
    with django_capture_on_commit_callbacks(execute=True):
        post_callback(*callback_body(data))
    upload_transaction.refresh_from_db()
    assert upload_transaction.state == UploadTransaction.State.FAILED
    assert upload_transaction.failed_file_url == "https://x.example/f.csv"
    assert callbacks_queue.count == 0


PRIORITY_REASON = "Priority, supports only numeric value or the value is not passed properly"


@pytest.mark.parametrize(
    "content",
    [
        f'PhoneNumber,Name,Reason\n9812345678,"Doe, J",{PRIORITY_REASON!r}\n'.replace("'", '"').encode(),
        f"PhoneNumber\tName\tReason\n9812345678\tDoe; J\t{PRIORITY_REASON}\n".encode(),
        f"PhoneNumber;Name;Reason\r\n9812345678;Doe, J;{PRIORITY_REASON}\r\n".encode("cp1252"),
    ],
    ids=["comma, quoted reason", "tab", "semicolon, CRLF"],
)
def test_reasons_holding_delimiters_are_read_whole(content):
    found = failed_file_read(content)
    assert found.rows == [("9812345678", PRIORITY_REASON)]


def test_a_failed_file_that_cannot_be_read_as_csv_leaves_the_leads_unconfirmed(completed, file_server):
    unreadable = b'PhoneNumber,Reason\n9812345678,"' + b"x" * 200_000 + b"\n"  # an unclosed quote
    upload_transaction = completed(file_server.serve("/broken.csv", unreadable))

    failed_file_fetch(upload_transaction=upload_transaction)

    upload_transaction.refresh_from_db()
    assert "cannot be read as CSV" in upload_transaction.attention
    assert set(lead_statuses(upload_transaction).values()) == {Lead.Status.UNCONFIRMED}


def test_redirects_are_followed_only_to_urls_that_pass_the_same_checks(completed, file_server, settings):
    settings.CLOUDAGENT_FAILED_FILE_HOSTS = ["127.0.0.1"]
    content = b"PhoneNumber,Reason\n"
    file_server.serve("/real.csv", content)
    moved = completed(file_server.serve("/moved.csv", status=302, Location=f"{file_server.url}/real.csv"))
    failed_file_fetch(upload_transaction=moved)
    moved.refresh_from_db()
    assert moved.failed_file, "a redirect within the allowed hosts is followed"

    escaping = completed(file_server.serve("/escape.csv", status=302, Location="http://10.0.0.1/internal.csv"))
    failed_file_fetch(upload_transaction=escaping)
    escaping.refresh_from_db()
    assert "redirects to a URL refused: host '10.0.0.1'" in escaping.attention
    assert set(lead_statuses(escaping).values()) == {Lead.Status.UNCONFIRMED}


@pytest.mark.parametrize("wording", ["Duplicate PhoneNumber", "Number Already Exist", "duplicate number"])
def test_on_a_resent_batch_any_duplicate_wording_means_cloudagent_holds_the_lead(
    post_callback,
    make_upload_transaction,
    file_server,
    run_callbacks_jobs,
    callbacks_queue,
    django_capture_on_commit_callbacks,
    wording,
):
    """A batch re-sent with checkDuplicate=true after an ambiguous attempt: V4 calls the numbers the first
    attempt delivered "Duplicate PhoneNumber", older APIs "Number Already Exist". Either way they are in the
    dialer; the exact wording is kept. A DND refusal in the same file is still a failure."""
    upload_transaction = make_upload_transaction(3, ambiguous_attempts=1)
    phones = national(upload_transaction)
    content = f"PhoneNumber,Name,Reason\n{phones[0]},Lead 0,{wording}\n{phones[1]},Lead 1,{DND}\n".encode()
    data = callback_data(upload_transaction.transaction_id, rows=3, numbersProcessed="1", numbersNotProcessed="2")
    data["failedFilePath"] = file_server.serve("/bucket/resent.csv", content)
    with django_capture_on_commit_callbacks(execute=True):
        assert post_callback(*callback_body(data, "json-object")).status_code == 200

    run_callbacks_jobs()

    statuses = lead_statuses(upload_transaction)
    reasons = dict(upload_transaction.leads.values_list("phone_number", "status_reason"))
    assert [statuses["+91" + p] for p in phones] == ["uploaded", "failed", "uploaded"]
    assert "earlier attempt" in reasons["+91" + phones[0]] and wording in reasons["+91" + phones[0]]
    upload_transaction.refresh_from_db()
    assert upload_transaction.attention == "", "the counts agree: one failed, one held"

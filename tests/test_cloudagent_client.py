"""The CloudAgent client (cloudagent/): row building, and every documented answer over real HTTP.

The documented answers come from the emulator (emulator/); the few answers it cannot give (a 404
from a proxy, a redirect, an echoed API key) come from a canned HTTP server in this file, over real HTTP too.
"""

import json
import logging
import pickle
import re
import shutil
import socket
import ssl
import subprocess
import traceback
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from urllib.parse import parse_qs

import pytest
import requests

import leadhub
from cloudagent.client import ENDPOINT_PATH, AddBulkDataResult, CloudAgentClient
from cloudagent.errors import (
    AuthenticationError,
    CampaignError,
    CloudAgentError,
    InvalidDataError,
    RateLimitedError,
    TransientError,
    UnexpectedResponseError,
)
from cloudagent.rules import MAX_ROW_CHARS, MAX_ROWS_PER_REQUEST, BuiltRows, build_rows, row_length
from tests.fixtures.core import LoopbackHTTPServer, QuietHandler

API_KEY = "demo-api-key-0123456789"
MAP = ["PhoneNumber", "Name", "Priority", "ExpiryDate"]


# --- build_rows ---------------------------------------------------------------------------------------------


@pytest.mark.smoke
def test_build_rows_maps_values_into_the_campaigns_column_order():
    column_map = ["PhoneNumber", "Name", "Priority", "ExpiryDate", "AgentId", "skill", "City"]
    record = {
        "City": "Pune",
        "skill": "Hindi",
        "Name": "Asha Rao",
        "PhoneNumber": "9876543210",
        "Priority": 7,
        "ExpiryDate": date(2025, 3, 31),
        "AgentId": 42,
        "Unmapped": "ignored",
    }

    built = build_rows(column_map, [("lead-1", record)])

    assert built == BuiltRows(
        keys=["lead-1"],
        rows=[["9876543210", "Asha Rao", 7, "2025-03-31", "42", "Hindi", "Pune"]],
        rejected=[],
    )


def test_build_rows_fills_missing_and_none_values_with_empty_strings():
    built = build_rows(MAP + ["City"], [(1, {"PhoneNumber": "9876543210", "Name": None, "ExpiryDate": None})])

    assert built.rows == [["9876543210", "", "", "", ""]]


@pytest.mark.parametrize(
    "value, expected",
    [
        (date(2025, 1, 2), "2025-01-02"),
        (datetime(2025, 1, 2, 23, 59, 59), "2025-01-02"),
        (datetime(2025, 1, 2, 23, 30, tzinfo=timezone(timedelta(hours=5, minutes=30))), "2025-01-02"),
        (datetime(2025, 1, 2, 0, 0, tzinfo=UTC), "2025-01-02"),
    ],
)
def test_build_rows_writes_dates_as_year_month_day_in_any_column(value, expected):
    built = build_rows(
        ["PhoneNumber", "ExpiryDate", "CallOn"],
        [(1, {"PhoneNumber": "1", "ExpiryDate": value, "CallOn": value})],
    )

    assert built.rows == [["1", expected, expected]]


@pytest.mark.parametrize("text", ["2025-03-31", "2025-03-31 18:00:00", ""])
def test_build_rows_accepts_expiry_dates_written_as_documented(text):
    built = build_rows(MAP, [(1, {"PhoneNumber": "9876543210", "ExpiryDate": text})])

    assert built.rows == [["9876543210", "", "", text]]


@pytest.mark.parametrize("text", ["31/03/2025", "2025-3-31", "2025-02-30", "tomorrow", "2025-03-31T18:00:00"])
def test_build_rows_rejects_expiry_dates_in_another_format(text):
    built = build_rows(MAP, [(1, {"PhoneNumber": "9876543210", "ExpiryDate": text})])

    assert built.rows == []
    assert "ExpiryDate" in built.rejected[0].reason and "YYYY-MM-DD" in built.rejected[0].reason


@pytest.mark.parametrize(
    "value, expected",
    [
        (1, 1),
        (99, 99),
        ("12", 12),
        (" 12 ", 12),
        (12.0, 12),
        ("12.0", 12),
        (Decimal("3"), 3),
        ("", ""),
        (None, ""),
    ],
)
def test_build_rows_sends_priority_as_a_json_number(value, expected):
    built = build_rows(MAP, [(1, {"PhoneNumber": "9876543210", "Priority": value})])

    assert built.rows[0][2] == expected
    assert type(built.rows[0][2]) is type(expected)
    assert json.dumps(built.rows[0]) == json.dumps(["9876543210", "", expected, ""])


@pytest.mark.parametrize(
    "value, reason",
    [
        (0, "Priority 0 is outside 1-99"),
        (100, "Priority 100 is outside 1-99"),
        (-3, "Priority -3 is outside 1-99"),
        ("abc", "Priority 'abc' is not a whole number"),
        (1.5, "Priority 1.5 is not a whole number"),
        ("1.5", "Priority '1.5' is not a whole number"),
        (True, "Priority True is not a whole number"),
        ("nan", "Priority 'nan' is not a whole number"),
        (float("inf"), "Priority inf is not a whole number"),
        ([1], "Priority [1] is not a whole number"),
    ],
)
def test_build_rows_rejects_a_priority_that_is_not_a_whole_number_from_1_to_99(value, reason):
    built = build_rows(MAP, [("k", {"PhoneNumber": "9876543210", "Priority": value})])

    assert built.rows == [] and built.keys == []
    assert [(r.key, r.reason) for r in built.rejected] == [("k", reason)]


@pytest.mark.parametrize("phone", [None, "", "   "])
def test_build_rows_rejects_a_record_without_a_phone_number(phone):
    built = build_rows(MAP, [("k", {"PhoneNumber": phone, "Name": "Asha"}), ("other", {"Name": "Ravi"})])

    assert built.rows == []
    assert [(r.key, r.reason) for r in built.rejected] == [
        ("k", "PhoneNumber is empty"),
        ("other", "PhoneNumber is empty"),
    ]


def test_build_rows_accepts_every_character_cloudagent_documents_for_names():
    name = "Dr. Asha_Rao (Jr) +91 $5 %: - 0123456789 abcxyz ABCXYZ"

    built = build_rows(MAP, [(1, {"PhoneNumber": "9876543210", "Name": name})])

    assert built.rejected == []
    assert built.rows[0][1] == name


@pytest.mark.parametrize(
    "name, named_characters",
    [
        ("O'Brien", '"\'"'),
        ("Asha & Co #1 & #2", "'&' '#'"),
        ("José", "'é'"),
        ("Rao, Asha", "','"),
        ("Asha\nRao", "'\\n'"),
        ("आशा", "'आ' 'श' 'ा'"),
        ("a/b@c", "'/' '@'"),
    ],
)
def test_build_rows_rejects_names_with_other_characters_and_names_them(name, named_characters):
    built = build_rows(MAP, [("k", {"PhoneNumber": "9876543210", "Name": name})])

    assert built.rows == []
    assert built.rejected[0].reason == f"Name contains characters CloudAgent refuses: {named_characters}"


def test_row_length_counts_each_header_and_the_text_of_its_cell():
    assert row_length(["PhoneNumber", "Name", "Priority"], ["9876543210", "", 5]) == (11 + 10) + (4 + 0) + (8 + 1)
    assert row_length(["PhoneNumber", "Name"], ["9876543210", None]) == 11 + 10 + 4


def _record_of_length(length: int) -> dict:
    # PhoneNumber (11) + its 10 digits + Name (4): the rest is the name.
    return {"PhoneNumber": "9876543210", "Name": "a" * (length - 25)}


def test_build_rows_takes_a_row_of_exactly_the_documented_maximum():
    built = build_rows(["PhoneNumber", "Name"], [("k", _record_of_length(MAX_ROW_CHARS))])

    assert MAX_ROW_CHARS == 2000
    assert built.rejected == []
    assert row_length(["PhoneNumber", "Name"], built.rows[0]) == 2000


def test_build_rows_rejects_a_row_one_character_over_the_maximum():
    built = build_rows(["PhoneNumber", "Name"], [("k", _record_of_length(MAX_ROW_CHARS + 1))])

    assert built.rows == []
    assert built.rejected[0].reason == "row is 2001 characters with its headers; CloudAgent allows at most 2000"


def test_build_rows_gives_every_reason_a_record_fails():
    built = build_rows(MAP, [("k", {"PhoneNumber": "", "Name": "A#", "Priority": 0, "ExpiryDate": "soon"})])

    assert built.rejected[0].reason == (
        "PhoneNumber is empty; Name contains characters CloudAgent refuses: '#'; Priority 0 is outside 1-99; "
        "ExpiryDate 'soon' is not a date as YYYY-MM-DD"
    )


def test_build_rows_keeps_keys_aligned_with_rows_and_rejected_records_out():
    records = [
        (10, {"PhoneNumber": "9000000010", "Name": "Ten"}),
        (11, {"PhoneNumber": "9000000011", "Name": "Elev#n"}),
        (12, {"PhoneNumber": "9000000012", "Priority": 500}),
        (13, {"PhoneNumber": "9000000013", "Name": "Thirteen", "Priority": "2"}),
    ]

    built = build_rows(MAP, iter(records))

    assert built.keys == [10, 13]
    assert built.rows == [["9000000010", "Ten", "", ""], ["9000000013", "Thirteen", 2, ""]]
    assert [r.key for r in built.rejected] == [11, 12]


@pytest.mark.parametrize("column_map", [["Name", "Priority"], [], ["PhoneNumber", "Name", "PhoneNumber"]])
def test_build_rows_refuses_a_map_cloudagent_would_fail(column_map):
    with pytest.raises(ValueError, match="column_map"):
        build_rows(column_map, [(1, {"PhoneNumber": "9876543210"})])


# --- A canned HTTP server, for answers the emulator does not give --------------------------------------


class CannedServer(LoopbackHTTPServer):
    """Answers every request with the status, body and headers set on it, and keeps what it received."""

    def __init__(self):
        self.status = 200
        self.body = b""
        self.headers: dict[str, str] = {}
        self.requests: list[dict] = []
        canned = self

        class Handler(QuietHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                canned.requests.append(
                    {
                        "path": self.path,
                        "headers": dict(self.headers),
                        "body": self.rfile.read(length).decode(),
                    }
                )
                self.send_response(canned.status)
                for name, value in canned.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(canned.body)))
                self.end_headers()
                self.wfile.write(canned.body)

            do_GET = do_POST

        super().__init__(Handler)

    def answer(self, status: int, body: bytes | str | dict, **headers: str) -> None:
        if isinstance(body, dict):
            body = json.dumps(body)
        self.status, self.body, self.headers = (
            status,
            body.encode() if isinstance(body, str) else body,
            headers,
        )


@pytest.fixture
def canned():
    server = CannedServer()
    yield server
    server.close()


@pytest.fixture
def canned_client(canned):
    with CloudAgentClient(base_url=canned.url, user_name="demo_user", api_key=API_KEY) as client:
        yield client


def _send_one(client, **options):
    return client.add_bulk_data(
        campaign_name="Demo_Outbound", column_map=MAP, rows=[["9876543210", "Asha", 5, ""]], **options
    )


ACCEPTED = {
    "transactionId": "129171716445505819319510",
    "status": "success",
    "message": "queued successfully",
}


@pytest.mark.parametrize(
    "status, body, error_class, ambiguous",
    [
        # CloudAgent's documented bodies are recognised whatever the HTTP status (200 is only inferred).
        (400, {"status": "error", "message": "Invalid Campaign Name"}, CampaignError, False),
        (401, {"status": "error", "message": "Invalid userName or apiKey"}, AuthenticationError, False),
        # Unrecognised JSON at 2xx: a person must look; ambiguous unless CloudAgent said error/failure.
        (200, {"status": "error", "message": "Campaign is paused"}, UnexpectedResponseError, False),
        (200, {"status": "failure", "message": "Something new"}, UnexpectedResponseError, False),
        (200, {"status": "success", "message": "queued successfully"}, UnexpectedResponseError, True),
        (200, {"result": "ok"}, UnexpectedResponseError, True),
        (200, "[]", UnexpectedResponseError, True),
        # No usable answer: retryable; ambiguous when the server may have acted on the request.
        (200, "", TransientError, True),
        (200, "<br />\n<b>Notice</b>: Undefined index" + json.dumps(ACCEPTED), TransientError, True),
        (502, "<html>Bad Gateway</html>", TransientError, True),
        (500, {"status": False, "error": "Internal"}, TransientError, True),
        (404, {"status": False, "error": "Unknown method"}, TransientError, False),
        (403, "<html>Forbidden</html>", TransientError, False),
        (429, "Too Many Requests", RateLimitedError, False),
    ],
)
def test_answers_beyond_the_documented_ones_are_classified(canned, canned_client, status, body, error_class, ambiguous):
    canned.answer(status, body)

    with pytest.raises(CloudAgentError) as caught:
        _send_one(canned_client)

    assert type(caught.value) is error_class
    assert caught.value.ambiguous is ambiguous
    assert caught.value.retryable is (error_class in (TransientError, RateLimitedError))
    assert caught.value.status_code == status


def test_a_redirect_is_not_followed(canned, canned_client):
    canned.answer(302, "", Location=canned.url + "/elsewhere")

    with pytest.raises(TransientError) as caught:
        _send_one(canned_client)

    assert (caught.value.status_code, caught.value.ambiguous) == (302, False)
    assert len(canned.requests) == 1


@pytest.mark.parametrize(
    "body",
    [
        json.dumps(json.dumps(ACCEPTED)),  # the answer double-encoded, as the documented callback sample is
        json.dumps({**ACCEPTED, "transactionId": 129171716445505819319510}),
        "\ufeff" + json.dumps(ACCEPTED),
    ],
)
def test_an_acceptance_in_a_tolerable_shape_is_still_an_acceptance(canned, canned_client, body):
    canned.answer(200, body)

    result = _send_one(canned_client)

    assert result.transaction_id == "129171716445505819319510"
    assert result.message == "queued successfully"


def test_an_error_body_is_kept_truncated(canned, canned_client):
    canned.answer(503, "x" * 10_000)

    with pytest.raises(TransientError) as caught:
        _send_one(canned_client)

    assert caught.value.body.startswith("x" * 2000)
    assert len(caught.value.body) < 2100


def test_the_request_carries_the_user_agent_and_a_form_body(canned, canned_client):
    canned.answer(200, ACCEPTED)

    _send_one(canned_client)

    (request,) = canned.requests
    assert request["path"] == ENDPOINT_PATH
    assert request["headers"]["User-Agent"] == f"leadhub/{leadhub.__version__} (+CloudAgent bulk client)"
    assert request["headers"]["Content-Type"] == "application/x-www-form-urlencoded"
    assert "apiKey" not in {name.lower() for name in request["headers"]}
    assert parse_qs(request["body"])["apiKey"] == [API_KEY]


def test_a_session_passed_in_is_used_and_left_open(canned):

    session = requests.Session()
    canned.answer(200, ACCEPTED)
    client = CloudAgentClient(base_url=canned.url + "/", user_name="demo_user", api_key=API_KEY, session=session)

    _send_one(client)
    client.close()

    assert client.session is session
    assert canned.requests[0]["path"] == ENDPOINT_PATH  # a trailing slash on the base URL does not double up
    session.close()


def test_for_account_reads_the_account_by_duck_typing(canned):
    class Account:
        base_url = canned.url
        user_name = "demo_user"
        api_key = API_KEY

    client = CloudAgentClient.for_account(Account(), read_timeout=3)

    assert (client.url, client.user_name, client.timeout) == (
        canned.url + ENDPOINT_PATH,
        "demo_user",
        (5.0, 3),
    )
    client.close()


@pytest.mark.parametrize("base_url", ["", "in1-ccaas-api.ozonetel.com", "ftp://example.com", "https://"])
def test_a_base_url_that_is_not_http_is_refused(base_url):
    with pytest.raises(ValueError, match="base_url"):
        CloudAgentClient(base_url=base_url, user_name="demo_user", api_key=API_KEY)


def test_errors_survive_pickling_with_their_attributes():

    error = TransientError("read timeout", status_code=None, body="b", ambiguous=True)

    copy = pickle.loads(pickle.dumps(error))

    assert (type(copy), copy.message, copy.body, copy.ambiguous, copy.retryable) == (
        TransientError,
        "read timeout",
        "b",
        True,
        True,
    )


def test_an_echoed_api_key_is_redacted_from_errors_and_logs(canned, canned_client, caplog):
    caplog.set_level(logging.DEBUG)
    canned.answer(200, {"status": "error", "message": f"Bad apiKey {API_KEY}", "echo": f"apiKey={API_KEY}"})

    with pytest.raises(UnexpectedResponseError) as caught:
        _send_one(canned_client)

    assert_secret_absent(caught.value, caplog, API_KEY)
    assert caught.value.message == "Bad apiKey [redacted]"


def test_an_echoed_api_key_is_kept_out_of_an_accepted_result(canned, canned_client):
    canned.answer(200, {**ACCEPTED, "request": {"apiKey": API_KEY, "fields": [f"apiKey={API_KEY}"]}})

    result = _send_one(canned_client)

    assert API_KEY not in json.dumps(result.raw) and API_KEY not in repr(result)
    assert result.raw["request"] == {"apiKey": "[redacted]", "fields": ["apiKey=[redacted]"]}


def test_an_echoed_api_key_is_redacted_in_its_form_encoded_spelling_too(canned, caplog):
    caplog.set_level(logging.DEBUG)
    canned.answer(200, {"status": "error", "message": "Bad apiKey demo+key/01", "echo": "apiKey=demo%2Bkey%2F01"})
    client = CloudAgentClient(base_url=canned.url, user_name="demo_user", api_key="demo+key/01")

    with pytest.raises(UnexpectedResponseError) as caught:
        _send_one(client)

    assert_secret_absent(caught.value, caplog, "demo+key/01")
    assert_secret_absent(caught.value, caplog, "demo%2Bkey%2F01")
    assert caught.value.body.count("[redacted]") == 2


# --- Helpers shared with the emulator tests ----------------------------------------------------------------


def assert_secret_absent(error: CloudAgentError, caplog, secret: str) -> None:
    rendered = [
        str(error),
        repr(error),
        error.message,
        error.body or "",
        "".join(traceback.format_exception(error)),
        caplog.text,
        *(record.getMessage() for record in caplog.records),
    ]
    assert not [text for text in rendered if secret in text]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_results_and_constants_are_as_documented():
    assert MAX_ROWS_PER_REQUEST == 500
    assert ENDPOINT_PATH == "/cloudAgentRestAPI/index.php/AddCampaignBulkDataV4/addBulkData/format/json"
    assert AddBulkDataResult("1", "m", {}).transaction_id == "1"


# --- Against the emulator, over HTTP ------------------------------------------------------------------------

ROW = ["9876543210", "Asha Rao", 5, "2025-03-31"]


def make_client(url: str, *, user_name: str = "demo_user", api_key: str = API_KEY, **options) -> CloudAgentClient:
    client = CloudAgentClient(base_url=url, user_name=user_name, api_key=api_key, **options)
    client.session.trust_env = False  # loopback: never through a proxy from the environment
    return client


@pytest.fixture
def client(emulator):
    with make_client(emulator.url) as client:
        yield client


def send(client, campaign_name="Demo_Outbound", rows=(ROW,), column_map=MAP, **options):
    return client.add_bulk_data(campaign_name=campaign_name, column_map=column_map, rows=list(rows), **options)


def api_requests(emulator) -> list[dict]:
    return emulator.inspect("requests")["requests"]


@pytest.mark.smoke
def test_an_accepted_request_gives_its_transaction_id(emulator, client):
    result = send(client)

    (seen,) = api_requests(emulator)
    assert result == AddBulkDataResult(
        transaction_id=seen["transactionId"], message="queued successfully", raw=seen["answer"]
    )
    assert result.transaction_id.isdigit() and len(result.transaction_id) in (24, 25)
    assert seen["outcome"] == "accepted"


# docs/cloudagent-contract.md, Synchronous answers: every documented refusal, and the class it becomes.
DOCUMENTED_REFUSALS = [
    ("apiKey missing or empty", {"api_key": ""}, {}, AuthenticationError, "apiKey should not be empty"),
    ("userName missing or empty", {"user_name": ""}, {}, AuthenticationError, "userName should not be empty"),
    ("wrong apiKey", {"api_key": "not-the-key"}, {}, AuthenticationError, "Invalid userName or apiKey"),
    ("wrong userName", {"user_name": "nobody"}, {}, AuthenticationError, "Invalid userName or apiKey"),
    ("campaignName empty", {}, {"campaign_name": ""}, CampaignError, "campaignName should not be empty"),
    ("unknown campaign", {}, {"campaign_name": "No_Such"}, CampaignError, "Invalid Campaign Name"),
    ("inbound campaign", {}, {"campaign_name": "Demo_Inbound"}, CampaignError, "Invalid Campaign Name"),
    ("bulkData empty", {}, {"rows": []}, InvalidDataError, "Please provide valid data"),
]


# The contract infers HTTP 200 for these answers; the emulator can send them with another status too.
@pytest.mark.parametrize("error_status", [200, 400])
@pytest.mark.parametrize(
    "account, call, error_class, message",
    [case[1:] for case in DOCUMENTED_REFUSALS],
    ids=[case[0] for case in DOCUMENTED_REFUSALS],
)
def test_each_documented_refusal_raises_its_error(emulator, error_status, account, call, error_class, message):
    emulator.configure(error_status=error_status)
    client = make_client(emulator.url, **account)

    with pytest.raises(error_class) as caught:
        send(client, **call)

    error = caught.value
    assert (error.message, error.status_code) == (message, error_status)
    assert (error.retryable, error.ambiguous) == (False, False)
    assert json.loads(error.body)["message"] == message
    (seen,) = api_requests(emulator)
    assert (seen["outcome"], seen["transactionId"]) == ("refused", None)


def test_the_request_is_form_encoded_with_every_documented_field(emulator, client):
    send(client, check_duplicate=True, start=True, callback_url="http://127.0.0.1:9/cloudagent/callback/s3cr3t")
    send(client, rows=[["9876543211", "Ravi", "", ""]], is_delete=True)

    first, second = api_requests(emulator)
    assert first["content_type"] == second["content_type"] == "application/x-www-form-urlencoded"
    assert first["fields"] == {
        "apiKey": "[redacted]",  # the emulator never shows a key; that it arrived is the acceptance
        "userName": "demo_user",
        "campaignName": "Demo_Outbound",
        "checkDuplicate": "true",
        "isDelete": "false",
        "action": "start",
        "callBackUrl": "http://127.0.0.1:9/cloudagent/callback/s3cr3t",
    }
    assert second["fields"] == {
        "apiKey": "[redacted]",
        "userName": "demo_user",
        "campaignName": "Demo_Outbound",
        "checkDuplicate": "false",
        "isDelete": "true",
    }
    assert (first["map"], first["rows"], second["rows"]) == (MAP, 1, 1)


def test_bulk_data_reaches_cloudagent_with_priority_as_a_number(emulator, client):
    built = build_rows(
        MAP,
        [
            (
                1,
                {
                    "PhoneNumber": "9876543210",
                    "Name": "Asha Rao",
                    "Priority": "7",
                    "ExpiryDate": date(2025, 3, 31),
                },
            ),
            (2, {"PhoneNumber": "9876543211", "Name": "Ravi"}),
        ],
    )

    result = send(client, rows=built.rows, start=True)
    emulator.process_now()

    state = emulator.inspect("leads", "accounts")
    assert state["leads"]["Demo_Outbound"] == [
        {
            "PhoneNumber": "9876543210",
            "Name": "Asha Rao",
            "Priority": 7,
            "ExpiryDate": "2025-03-31",
            "transactionId": result.transaction_id,
            "userName": "demo_user",
        },
        {
            "PhoneNumber": "9876543211",
            "Name": "Ravi",
            "Priority": "",
            "ExpiryDate": "",
            "transactionId": result.transaction_id,
            "userName": "demo_user",
        },
    ]
    (account,) = state["accounts"]
    assert {c["name"]: c["started"] for c in account["campaigns"]}["Demo_Outbound"] is True


def test_a_full_batch_of_500_rows_is_one_request(emulator, client):
    rows = [[f"98{i:08d}", f"Lead {i}", 1, ""] for i in range(MAX_ROWS_PER_REQUEST)]

    send(client, rows=rows)

    (seen,) = api_requests(emulator)
    assert (seen["outcome"], seen["rows"]) == ("accepted", 500)


@pytest.mark.smoke
@pytest.mark.parametrize(
    "column_map, rows, problem",
    [
        (MAP, [ROW] * (MAX_ROWS_PER_REQUEST + 1), "501 rows"),
        (["Name", "Priority"], [["Asha", 5]], "PhoneNumber"),
        (["PhoneNumber", "Name", "PhoneNumber"], [["1", "a", "1"]], "twice"),
        (MAP, [ROW, ["9876543211", "Ravi"]], "row 1 has 2 values"),
    ],
)
def test_a_batch_cloudagent_would_refuse_or_fail_never_leaves_us(emulator, client, column_map, rows, problem):
    with pytest.raises(ValueError, match=problem):
        send(client, column_map=column_map, rows=rows)

    assert api_requests(emulator) == []


def test_the_rate_limit_answer_is_rate_limited_error(start_emulator):
    emulator = start_emulator("--requests-per-window", "2", "--window-seconds", "600")
    client = make_client(emulator.url)
    send(client)
    send(client)

    with pytest.raises(RateLimitedError) as caught:
        send(client)

    assert caught.value.message == "too many Requests and failed to add Data to queue"
    assert (caught.value.retryable, caught.value.ambiguous) == (True, False)
    assert [r["outcome"] for r in api_requests(emulator)] == ["accepted", "accepted", "rate_limited"]
    client.close()


def test_a_rate_limit_answer_sent_as_http_429_is_rate_limited_error(emulator, client):
    emulator.configure(rate_limit_status=429)
    emulator.force_fault("rate_limit")

    with pytest.raises(RateLimitedError) as caught:
        send(client)

    assert (caught.value.status_code, caught.value.retryable, caught.value.ambiguous) == (429, True, False)


def test_a_read_timeout_is_ambiguous_and_the_request_was_in_fact_queued(emulator):
    emulator.configure(slow_seconds=3.0)
    emulator.force_fault("slow")
    client = make_client(emulator.url, read_timeout=0.3)

    with pytest.raises(TransientError) as caught:
        send(client)

    assert (caught.value.ambiguous, caught.value.retryable, caught.value.status_code) == (True, True, None)
    assert "read timeout" in caught.value.message
    assert api_requests(emulator)[0]["outcome"] == "accepted"
    client.close()


def test_a_dropped_connection_is_ambiguous_and_the_request_was_in_fact_queued(emulator, client):
    emulator.force_fault("drop")

    with pytest.raises(TransientError) as caught:
        send(client)

    assert (caught.value.ambiguous, caught.value.retryable, caught.value.status_code) == (True, True, None)
    assert api_requests(emulator)[0]["outcome"] == "accepted"


def test_a_refused_connection_is_not_ambiguous():
    client = make_client(f"http://127.0.0.1:{closed_port()}")

    with pytest.raises(TransientError) as caught:
        send(client)

    assert (caught.value.ambiguous, caught.value.retryable, caught.value.status_code) == (False, True, None)
    assert "could not connect" in caught.value.message


def test_a_certificate_that_does_not_verify_is_not_ambiguous(tmp_path):
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a self-signed certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost"]
        + ["-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    server = CannedServer()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.httpd.socket = context.wrap_socket(server.httpd.socket, server_side=True)
    client = make_client(server.url.replace("http://", "https://"))

    with pytest.raises(TransientError) as caught:
        send(client)

    assert (caught.value.ambiguous, caught.value.retryable) == (False, True)
    assert "CERTIFICATE_VERIFY_FAILED" in caught.value.message
    assert server.requests == []
    client.close()
    server.close()


# The client cannot tell an answer lost before the queue from one lost after it: both readings are ambiguous.
@pytest.mark.parametrize("after_queue", [False, True], ids=["before-queue", "after-queue"])
@pytest.mark.parametrize("fault, status", [("error", 500), ("non_json", 200)])
def test_a_server_error_or_a_non_json_answer_is_ambiguous(emulator, client, fault, status, after_queue):
    emulator.configure(faults_after_queue=after_queue)
    emulator.force_fault(fault)

    with pytest.raises(TransientError) as caught:
        send(client)

    assert (caught.value.status_code, caught.value.ambiguous, caught.value.retryable) == (status, True, True)
    assert caught.value.body.startswith("<html>")
    assert bool(api_requests(emulator)[0]["transactionId"]) is after_queue


def test_a_client_recovers_after_a_transient_failure(emulator, client):
    emulator.force_fault("drop")
    with pytest.raises(TransientError):
        send(client)

    result = send(client, rows=[["9876543211", "Ravi", 2, ""]])

    assert result.transaction_id == api_requests(emulator)[1]["transactionId"]


def test_each_call_logs_one_line_without_the_key(emulator, client, caplog):
    caplog.set_level(logging.INFO, logger="leadhub.cloudagent")
    result = send(client)
    with pytest.raises(CampaignError):
        send(client, campaign_name="No_Such", rows=[ROW, ROW])

    lines = [record for record in caplog.records if record.name == "leadhub.cloudagent"]
    assert [record.levelno for record in lines] == [logging.INFO, logging.WARNING]
    assert re.fullmatch(
        rf"add_bulk_data campaign='Demo_Outbound' rows=1 outcome=queued transactionId={result.transaction_id}"
        r" elapsed=\d+\.\d{3}s",
        lines[0].getMessage(),
    )
    assert re.fullmatch(
        r"add_bulk_data campaign='No_Such' rows=2"
        r" outcome=CampaignError: Invalid Campaign Name \(HTTP 200\) elapsed=\d+\.\d{3}s",
        lines[1].getMessage(),
    )
    assert API_KEY not in caplog.text


def _provoke_fault(fault, **settings):
    def provoke(emulator, client):
        emulator.configure(**settings)
        emulator.force_fault(fault)
        send(client)

    return provoke


SECRET_CASES = {
    "wrong userName": lambda emulator, client: send(make_client(emulator.url, user_name="nobody")),
    "userName empty": lambda emulator, client: send(make_client(emulator.url, user_name="")),
    "unknown campaign": lambda emulator, client: send(client, campaign_name="No_Such"),
    "campaignName empty": lambda emulator, client: send(client, campaign_name=""),
    "invalid data": lambda emulator, client: send(client, rows=[]),
    "rate limited": _provoke_fault("rate_limit"),
    "server error": _provoke_fault("error"),
    "non-JSON": _provoke_fault("non_json"),
    "dropped": _provoke_fault("drop"),
    "read timeout": lambda emulator, client: _provoke_fault("slow", slow_seconds=3.0)(
        emulator, make_client(emulator.url, read_timeout=0.3)
    ),
    "refused": lambda emulator, client: send(make_client(f"http://127.0.0.1:{closed_port()}")),
}


@pytest.mark.parametrize("provoke", SECRET_CASES.values(), ids=SECRET_CASES.keys())
def test_the_api_key_appears_in_no_error_and_no_log(emulator, client, caplog, provoke):
    caplog.set_level(logging.DEBUG)

    with pytest.raises(CloudAgentError) as caught:
        provoke(emulator, client)

    assert_secret_absent(caught.value, caplog, API_KEY)
    assert API_KEY not in repr(client)


def test_a_wrong_api_key_does_not_appear_either(emulator, caplog):
    caplog.set_level(logging.DEBUG)
    client = make_client(emulator.url, api_key="wrong-key-9876543210")

    with pytest.raises(AuthenticationError) as caught:
        send(client)

    assert_secret_absent(caught.value, caplog, "wrong-key-9876543210")
    assert "wrong-key-9876543210" not in repr(client)

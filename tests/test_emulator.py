"""The CloudAgent emulator (emulator/), over real HTTP: every documented answer in the documented order,
the limits, the queue and its per-row checks, callbacks in every shape, failed files and faults.

Expected bodies are the provider's own, from tests/fixtures/cloudagent/ (its README says where each comes from).
Nothing here asserts a wall-clock duration: rate-limit checks replay the emulator's recorded arrival times, and
"later" is reached with process-now or by polling with a generous timeout."""

import concurrent.futures
import csv
import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from emulator.files import FailedFiles
from tests.fixtures.core import LoopbackHTTPServer, QuietHandler
from tests.fixtures.emulator import REPO_ROOT

API = "/cloudAgentRestAPI/index.php/AddCampaignBulkDataV4/addBulkData/format/json"
SAMPLES = Path(__file__).parent / "fixtures" / "cloudagent"
API_KEY = "demo-api-key-0123456789"
MAP = ["PhoneNumber", "Name", "Priority", "ExpiryDate"]
CALLBACK_KEYS = [
    "totalNoUploaded",
    "numbersProcessed",
    "numbersNotProcessed",
    "failedFilePath",
    "transactionId",
    "status",
    "message",
    "startDateTime",
    "endDateTime",
]
PROVIDER_TIME = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")
TRANSACTION_ID = re.compile(r"\d{24,25}")
UNESCAPED_DATA = re.compile(r'\{"data":"(\{.*\})"\}', re.DOTALL)


def sample(name: str) -> dict:
    return json.loads((SAMPLES / name).read_text())


def lead_row(phone: str, name: str = "Asha Rao", priority: object = 5, expiry: str = "2030-12-31") -> list:
    return [phone, name, priority, expiry]


def bulk(rows: list[list], column_map: list[str] = MAP) -> str:
    return json.dumps({"map": column_map, "data": rows})


def form(**fields) -> dict:
    """A valid request's fields; a field set to None is left out."""
    base = {
        "apiKey": API_KEY,
        "userName": "demo_user",
        "campaignName": "Demo_Outbound",
        "bulkData": bulk([lead_row("9876543210")]),
    }
    base.update(fields)
    return {name: value for name, value in base.items() if value is not None}


@pytest.fixture
def http():
    session = requests.Session()
    session.trust_env = False
    yield session
    session.close()


def send(http, emulator, fields: dict | None = None, **kwargs) -> requests.Response:
    kwargs.setdefault("timeout", 10)
    if fields is None and "json" not in kwargs and "files" not in kwargs:
        fields = form()
    return http.post(emulator.url + API, data=fields, **kwargs)


def upload(http, emulator, rows: list[list], column_map: list[str] = MAP, **fields) -> str:
    """Send rows; assert CloudAgent queued them; return the transactionId."""
    answer = send(http, emulator, form(bulkData=bulk(rows, column_map), **fields)).json()
    assert answer["status"] == "success", answer
    return answer["transactionId"]


def processed(emulator, transaction_id: str) -> dict:
    """The transaction after process-now."""
    emulator.process_now()
    (found,) = [t for t in emulator.inspect()["transactions"] if t["transactionId"] == transaction_id]
    assert found["state"] == "processed"
    return found


def phones(emulator, campaign: str = "Demo_Outbound") -> list[str]:
    return [lead["PhoneNumber"] for lead in emulator.inspect("leads")["leads"][campaign]]


class Receiver(LoopbackHTTPServer):
    """Stands in for our callback webhook: records every POST and answers with the next queued status (200)."""

    def __init__(self):
        self.received: list[dict] = []
        self.statuses: deque[int] = deque()
        self._lock = threading.Lock()
        receiver = self

        class Handler(QuietHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._lock:
                    receiver.received.append(
                        {"content_type": self.headers.get("Content-Type", ""), "body": body.decode()}
                    )
                    status = receiver.statuses.popleft() if receiver.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        super().__init__(Handler)
        self.url += "/cloudagent/callback/unguessable"

    def wait(self, count: int, timeout: float = 10.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(self.received) >= count, f"{len(self.received)} callbacks received, expected {count}"
        return list(self.received)


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


def decode_callback(received: dict) -> dict:
    """The data object of a callback in any documented shape (our own reading, independent of the emulator)."""
    body = received["body"]
    if received["content_type"].startswith("application/x-www-form-urlencoded"):
        return json.loads(parse_qs(body)["data"][0])
    data = json.loads(body)["data"]
    return json.loads(data) if isinstance(data, str) else data


# --- The provider's documented bodies ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(p.name for p in SAMPLES.glob("response_*.json")))
def test_documented_responses_parse(name):
    answer = sample(name)
    if answer["status"] == "success":
        assert list(answer) == ["transactionId", "status", "message"]
        assert TRANSACTION_ID.fullmatch(answer["transactionId"]) and answer["message"] == "queued successfully"
    else:
        assert list(answer) == ["status", "message"] and answer["status"] in ("error", "failure")


@pytest.mark.parametrize("name", sorted(p.name for p in SAMPLES.glob("callback_*.json")))
def test_documented_callbacks_parse_as_strings_only(name):
    data = decode_callback({"content_type": "application/json", "body": (SAMPLES / name).read_text()})
    assert list(data) == CALLBACK_KEYS
    assert all(isinstance(value, str) for value in data.values())
    assert TRANSACTION_ID.fullmatch(data["transactionId"])
    assert (data["status"], data["message"]) in {
        ("Success", "File Successfully uploaded."),
        ("Fail", "File Failed to Upload."),
    }
    assert PROVIDER_TIME.fullmatch(data["startDateTime"]) and PROVIDER_TIME.fullmatch(data["endDateTime"])
    total, done, not_done = (int(data[key]) for key in CALLBACK_KEYS[:3])
    assert total == done + not_done


def test_the_pages_sample_callback_is_not_json_as_printed_but_carries_the_same_data():
    verbatim = (SAMPLES / "callback_success_partial_no_file_verbatim.txt").read_text().strip()
    with pytest.raises(json.JSONDecodeError):
        json.loads(verbatim)
    data = json.loads(UNESCAPED_DATA.fullmatch(verbatim).group(1))
    assert data == decode_callback(
        {"content_type": "application/json", "body": (SAMPLES / "callback_success_partial_no_file.json").read_text()}
    )
    # The documented quirk the emulator reproduces with empty_failed_path_on_partial.
    assert (data["status"], data["numbersNotProcessed"], data["failedFilePath"]) == ("Success", "4", "")


# --- Synchronous answers ----------------------------------------------------------------------------------------

BAD_BULK_DATA = {
    "missing": None,
    "empty": "",
    "not JSON": "{map: PhoneNumber}",
    "a JSON list": json.dumps([["9876543210"]]),
    "map missing": json.dumps({"data": [["9876543210"]]}),
    "data missing": json.dumps({"map": ["PhoneNumber"]}),
    "map empty": json.dumps({"map": [], "data": [["9876543210"]]}),
    "data empty": json.dumps({"map": ["PhoneNumber"], "data": []}),
    "map a string": json.dumps({"map": "PhoneNumber", "data": [["9876543210"]]}),
    "a row not a list": json.dumps({"map": ["PhoneNumber"], "data": ["9876543210"]}),
    "a cell an object": json.dumps({"map": ["PhoneNumber"], "data": [[{"n": "9876543210"}]]}),
}
SYNCHRONOUS_CASES = [
    ("apiKey missing", {"apiKey": None}, "response_api_key_empty.json"),
    ("apiKey empty", {"apiKey": ""}, "response_api_key_empty.json"),
    ("apiKey key misspelt", {"apiKey": None, "apikey": API_KEY}, "response_api_key_empty.json"),
    ("apiKey checked first", {"apiKey": None, "userName": None, "campaignName": None}, "response_api_key_empty.json"),
    ("userName missing", {"userName": None}, "response_user_name_empty.json"),
    ("userName empty", {"userName": ""}, "response_user_name_empty.json"),
    ("userName key misspelt", {"userName": None, "username": "demo_user"}, "response_user_name_empty.json"),
    ("wrong apiKey", {"apiKey": "not-the-key"}, "response_invalid_credentials.json"),
    ("wrong userName", {"userName": "someone_else"}, "response_invalid_credentials.json"),
    ("credentials before campaign", {"apiKey": "x", "campaignName": None}, "response_invalid_credentials.json"),
    ("campaignName missing", {"campaignName": None}, "response_campaign_name_empty.json"),
    ("campaignName empty", {"campaignName": ""}, "response_campaign_name_empty.json"),
    (
        "campaignName key misspelt",
        {"campaignName": None, "CampaignName": "Demo_Outbound"},
        "response_campaign_name_empty.json",
    ),
    ("unknown campaign", {"campaignName": "No_Such_Campaign"}, "response_invalid_campaign.json"),
    ("campaign name in another case", {"campaignName": "demo_outbound"}, "response_invalid_campaign.json"),
    ("inbound campaign", {"campaignName": "Demo_Inbound"}, "response_invalid_campaign.json"),
    ("campaign before bulkData", {"campaignName": "Demo_Inbound", "bulkData": None}, "response_invalid_campaign.json"),
    *((f"bulkData {case}", {"bulkData": value}, "response_invalid_data.json") for case, value in BAD_BULK_DATA.items()),
]


@pytest.mark.smoke
@pytest.mark.parametrize("fields, expected", [c[1:] for c in SYNCHRONOUS_CASES], ids=[c[0] for c in SYNCHRONOUS_CASES])
def test_every_documented_refusal_in_the_documented_order(emulator, http, fields, expected):
    response = send(http, emulator, form(**fields))

    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == sample(expected)
    (record,) = emulator.inspect()["requests"]
    assert (record["outcome"], record["counted"], record["transactionId"]) == ("refused", False, None)
    assert emulator.inspect("transactions")["transactions"] == []


@pytest.mark.smoke
def test_an_accepted_request_is_queued_then_processed_into_leads(emulator, http):
    rows = [lead_row("9876543210"), lead_row("+919876543211", "Ravi K.", "12", "")]
    fields = form(bulkData=bulk(rows), checkDuplicate="true", isDelete="false", action="start", callBackUrl="")
    emulator.configure(process_delay=30)

    response = send(http, emulator, fields)

    answer = response.json()
    assert response.status_code == 200
    assert list(answer) == list(sample("response_accepted.json"))
    assert (answer["status"], answer["message"]) == ("success", "queued successfully")
    assert TRANSACTION_ID.fullmatch(answer["transactionId"])
    snapshot = emulator.inspect()
    (record,) = snapshot["requests"]
    assert record["outcome"] == "accepted" and record["counted"] and record["transactionId"] == answer["transactionId"]
    assert (record["userName"], record["campaign"], record["rows"], record["map"]) == (
        "demo_user",
        "Demo_Outbound",
        2,
        MAP,
    )
    assert record["content_type"] == "application/x-www-form-urlencoded"
    assert record["fields"] == {
        "apiKey": "[redacted]",
        "userName": "demo_user",
        "campaignName": "Demo_Outbound",
        "checkDuplicate": "true",
        "isDelete": "false",
        "action": "start",
        "callBackUrl": "",
    }
    assert snapshot["queue"] == [answer["transactionId"]] and snapshot["leads"]["Demo_Outbound"] == []

    transaction = processed(emulator, answer["transactionId"])

    assert transaction["result"]["status"] == "Success"
    assert emulator.inspect("leads")["leads"]["Demo_Outbound"] == [
        {**dict(zip(MAP, row, strict=True)), "transactionId": answer["transactionId"], "userName": "demo_user"}
        for row in rows
    ]
    (campaign,) = [c for c in emulator.inspect("accounts")["accounts"][0]["campaigns"] if c["name"] == "Demo_Outbound"]
    assert campaign["started"] is True, 'action "start" starts the campaign once the upload is processed'


def test_transaction_ids_are_24_or_25_digit_strings_and_unique(emulator, http):
    emulator.configure(requests_per_window=100)
    ids = [upload(http, emulator, [lead_row("9876543210")]) for _ in range(20)]
    assert all(isinstance(i, str) and TRANSACTION_ID.fullmatch(i) for i in ids)
    assert len(set(ids)) == 20


@pytest.mark.parametrize(
    "encoding", ["form", "multipart", "json with bulkData an object", "json with bulkData a string"]
)
def test_each_body_encoding_is_read(emulator, http, encoding):
    fields = form(checkDuplicate="true", action="start")
    if encoding == "form":
        response = send(http, emulator, fields)
    elif encoding == "multipart":
        response = send(http, emulator, files={name: (None, value) for name, value in fields.items()})
    elif encoding == "json with bulkData an object":
        document = {**fields, "bulkData": json.loads(fields["bulkData"]), "checkDuplicate": True}
        response = send(http, emulator, json=document)
    else:
        response = send(http, emulator, json=fields)

    transaction_id = response.json()["transactionId"]
    transaction = processed(emulator, transaction_id)
    assert (transaction["checkDuplicate"], transaction["start"]) == (True, True)
    assert phones(emulator) == ["9876543210"]


@pytest.mark.parametrize(
    "how",
    [
        {"data": json.dumps(form()), "headers": {"Content-Type": "text/plain"}},
        {"params": form()},  # the fields are body fields; a query string is not read
        {"data": "{not json", "headers": {"Content-Type": "application/json"}},
    ],
    ids=["text/plain body", "query string", "broken JSON"],
)
def test_a_body_carrying_no_fields_is_answered_apikey_empty(emulator, http, how):
    response = http.post(emulator.url + API, timeout=10, **how)
    assert response.json() == sample("response_api_key_empty.json")


def test_more_than_500_rows_is_refused_after_spending_a_rate_limit_slot(emulator, http):
    rows = [lead_row(f"98{n:08d}") for n in range(501)]

    too_many = send(http, emulator, form(bulkData=bulk(rows)))
    just_enough = send(http, emulator, form(bulkData=bulk(rows[:500])))

    assert too_many.json() == sample("response_invalid_data.json")
    assert just_enough.json()["status"] == "success"
    first, second = emulator.inspect()["requests"]
    assert (first["outcome"], first["counted"], first["rows"]) == ("refused", True, 501)
    assert processed(emulator, second["transactionId"])["result"]["numbersProcessed"] == "500"


def test_error_statuses_are_settings_and_bodies_stay_documented(emulator, http):
    emulator.configure(error_status=400, rate_limit_status=429, requests_per_window=1)

    refused = send(http, emulator, form(campaignName="Demo_Inbound"))
    accepted = send(http, emulator)
    limited = send(http, emulator)

    assert (refused.status_code, refused.json()) == (400, sample("response_invalid_campaign.json"))
    assert accepted.status_code == 200
    assert (limited.status_code, limited.json()) == (429, sample("response_rate_limited.json"))


# --- Rate limit -------------------------------------------------------------------------------------------------


def replay_limiter(arrivals: list[float], per_window: int, window: float, refused_count: bool) -> list[bool]:
    """Our own model of the documented limit, read as a sliding window: a request at t is accepted when fewer
    than N counted requests arrived in (t - W, t]."""
    counted: list[float] = []
    accepted = []
    for t in arrivals:
        admitted = sum(1 for c in counted if c > t - window) < per_window
        accepted.append(admitted)
        if admitted or refused_count:
            counted.append(t)
    return accepted


def assert_never_more_than(per_window: int, window: float, times: list[float]) -> None:
    times = sorted(times)
    for i in range(len(times) - per_window):
        assert times[i + per_window] - times[i] >= window - 1e-9, f"{per_window + 1} accepted within {window} s"


@pytest.mark.smoke
def test_the_rate_limit_is_a_sliding_window_over_the_recorded_arrivals(emulator, http):
    emulator.configure(requests_per_window=3, window_seconds=1.0)
    answers = []
    deadline = time.monotonic() + 15
    while sum(a["status"] == "success" for a in answers) < 5 and time.monotonic() < deadline:
        answers.append(send(http, emulator).json())
        time.sleep(0.02)

    records = emulator.inspect()["requests"]
    arrivals = [r["monotonic"] for r in records]
    accepted = [r["outcome"] == "accepted" for r in records]
    assert sum(accepted) >= 5 and not all(accepted), "the window filled, refused, then slid"
    assert accepted == replay_limiter(arrivals, 3, 1.0, refused_count=False)
    assert_never_more_than(3, 1.0, [t for t, ok in zip(arrivals, accepted, strict=True) if ok])
    assert all(a == sample("response_rate_limited.json") for a in answers if a["status"] != "success")
    assert all(r["counted"] is (r["outcome"] == "accepted") for r in records)


def test_rate_limited_requests_can_be_made_to_count(emulator, http):
    emulator.configure(requests_per_window=3, window_seconds=0.5, rate_limited_count=True)
    for _ in range(20):
        send(http, emulator)
        time.sleep(0.03)

    records = emulator.inspect()["requests"]
    accepted = [r["outcome"] == "accepted" for r in records]
    assert accepted == replay_limiter([r["monotonic"] for r in records], 3, 0.5, refused_count=True)
    assert all(r["counted"] for r in records)
    assert_never_more_than(3, 0.5, [r["monotonic"] for r in records if r["outcome"] == "accepted"])


def test_concurrent_requests_get_exactly_the_limit(emulator):
    def one(_):
        with requests.Session() as session:
            session.trust_env = False
            return send(session, emulator).json()["status"]

    with concurrent.futures.ThreadPoolExecutor(max_workers=12) as pool:
        statuses = list(pool.map(one, range(12)))

    assert statuses.count("success") == 5 and statuses.count("error") == 7


def test_the_limit_is_per_account(start_emulator):
    account = {
        "userName": "second_user",
        "apiKey": "second-key",
        "campaigns": [{"name": "Demo_Outbound", "type": "outbound", "map": MAP}],
    }
    demo = json.loads((REPO_ROOT / "emulator" / "demo_config.json").read_text())
    emulator = start_emulator("--requests-per-window", "1", config={"accounts": [*demo["accounts"], account]})
    with requests.Session() as http:
        http.trust_env = False
        first = send(http, emulator).json()
        second = send(http, emulator, form(userName="second_user", apiKey="second-key")).json()
        third = send(http, emulator).json()
    assert (first["status"], second["status"], third) == ("success", "success", sample("response_rate_limited.json"))


# --- Processing: duplicates, per-row reasons, whole-upload failures ---------------------------------------------

A, B, C, D = "9876500001", "9876500002", "9876500003", "9876500004"


@pytest.mark.parametrize(
    "flags, second_upload_adds",
    [
        ({}, [A, C, C, D]),
        ({"checkDuplicate": "false", "isDelete": "false"}, [A, C, C, D]),
        ({"checkDuplicate": "true"}, [C, D]),
        ({"isDelete": "true"}, [C, C, D]),
        ({"checkDuplicate": "true", "isDelete": "true"}, [C, C, D]),
    ],
    ids=["no flags", "both false", "checkDuplicate", "isDelete", "both: isDelete counts"],
)
def test_duplicate_rules(emulator, http, flags, second_upload_adds):
    upload(http, emulator, [lead_row(A), lead_row(B)])
    upload(http, emulator, [lead_row(C)], campaignName="Demo_Second")  # another campaign's numbers do not count
    emulator.process_now()

    transaction_id = upload(http, emulator, [lead_row(A), lead_row(C), lead_row(C), lead_row(D)], **flags)

    transaction = processed(emulator, transaction_id)
    assert phones(emulator) == [A, B, *second_upload_adds]
    refused = 4 - len(second_upload_adds)
    assert transaction["result"]["numbersNotProcessed"] == str(refused)
    assert [row["reason"] for row in transaction["failed_rows"]] == ["Number Already Exist"] * refused


def test_each_row_check_gives_its_reason_and_the_failed_file_lists_them(emulator, http):
    emulator.configure(dnd=["+919000000001"])
    fixed = sum(map(len, MAP)) + len("9876543230") + len("x") + len("1")
    cases = [
        (lead_row("9876543210"), None),
        (lead_row("", "No Phone"), "Phone Number is Empty!"),
        (lead_row("98765 43212"), "Invalid Phone Number"),
        (lead_row("987654321"), "Invalid Phone Number"),  # 9 digits
        (lead_row("98765432101234"), "Invalid Phone Number"),  # 14 digits
        (lead_row("+919876543213", "Allowed (chars). + $ % - : _ 9"), None),
        (lead_row("9876543214", "Zoë"), "Name contains invalid characters"),
        (lead_row("9876543215", "a@b"), "Name contains invalid characters"),
        (
            lead_row("9876543216", priority="abc"),
            "Priority, supports only numeric value or the value is not passed properly",
        ),
        (
            lead_row("9876543217", priority=0),
            "Priority, supports only numeric value or the value is not passed properly",
        ),
        (
            lead_row("9876543218", priority=100),
            "Priority, supports only numeric value or the value is not passed properly",
        ),
        (
            lead_row("9876543219", priority=7.5),
            "Priority, supports only numeric value or the value is not passed properly",
        ),
        (lead_row("9876543220", priority=""), None),  # not passed
        (lead_row("9876543221", priority="99"), None),
        (lead_row("9876543230", "x", 1, "y" * (2000 - fixed)), None),  # exactly 2000 with its headers
        (lead_row("9876543231", "x", 1, "y" * (2001 - fixed)), "Row exceeds the maximum characters allowed"),
        (lead_row("9000000001"), "PhoneNumber Added is a DND Number"),
    ]

    transaction_id = upload(http, emulator, [row for row, _ in cases])

    result = processed(emulator, transaction_id)
    failed = [(row, reason) for row, reason in cases if reason]
    assert result["result"]["status"] == "Success"
    assert [result["result"][key] for key in CALLBACK_KEYS[:3]] == [
        str(len(cases)),
        str(len(cases) - len(failed)),
        str(len(failed)),
    ]
    assert [(r["index"], r["reason"]) for r in result["failed_rows"]] == [
        (index, reason) for index, (_, reason) in enumerate(cases) if reason
    ]
    assert phones(emulator) == [row[0] for row, reason in cases if not reason]

    file = requests.get(result["result"]["failedFilePath"], timeout=10)
    assert file.status_code == 200 and file.headers["Content-Type"].startswith("text/csv")
    table = list(csv.reader(io.StringIO(file.text)))
    assert table == [[*MAP, "Reason"], *([*(str(cell) for cell in row), reason] for row, reason in failed)]


def test_an_empty_priority_can_be_made_to_fail(emulator, http):
    emulator.configure(empty_priority_fails=True)
    transaction = processed(emulator, upload(http, emulator, [lead_row("9876543210", priority="")]))
    assert [r["reason"] for r in transaction["failed_rows"]] == [
        "Priority, supports only numeric value or the value is not passed properly"
    ]


@pytest.mark.parametrize(
    "column_map, rows",
    [
        (["Phone", "Name", "Priority", "ExpiryDate"], [lead_row("9876543210")]),
        (["Name", "PhoneNumber", "Priority", "ExpiryDate"], [["Asha", "9876543210", 5, ""]]),
        ([*MAP, "City"], [[*lead_row("9876543210"), "Pune"]]),
        (["PhoneNumber", "Name"], [["9876543210", "Asha"]]),
        (MAP, [lead_row("9876543210"), ["9876543211", "Short row", 5]]),
    ],
    ids=["map without PhoneNumber", "map in another order", "extra header", "missing headers", "a row too short"],
)
def test_a_map_that_does_not_fit_fails_the_whole_upload_in_the_callback(emulator, http, receiver, column_map, rows):
    response = send(http, emulator, form(bulkData=bulk(rows, column_map), callBackUrl=receiver.url))
    assert response.json()["status"] == "success", "accepted synchronously: it fails later"

    transaction = processed(emulator, response.json()["transactionId"])

    (callback,) = receiver.received
    data = decode_callback(callback)
    assert data == transaction["result"]
    total = str(len(rows))
    assert [data[key] for key in CALLBACK_KEYS[:4]] == [total, "0", total, ""]
    assert (data["status"], data["message"]) == ("Fail", "File Failed to Upload.")
    assert phones(emulator) == []


def test_map_order_can_be_relaxed(emulator, http):
    emulator.configure(map_match="any-order")
    column_map = ["Name", "PhoneNumber", "Priority", "ExpiryDate"]
    transaction = processed(emulator, upload(http, emulator, [["Asha", "9876543210", 5, ""]], column_map))
    assert transaction["result"]["status"] == "Success"
    assert phones(emulator) == ["9876543210"]


# --- Failed files -----------------------------------------------------------------------------------------------


def failed_file_url(emulator, http) -> str:
    transaction_id = upload(http, emulator, [lead_row("9876543210"), lead_row("")])
    return processed(emulator, transaction_id)["result"]["failedFilePath"]


def test_the_failed_file_link_is_signed_and_expires(emulator, http):
    url = failed_file_url(emulator, http)
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    base = f"{parts.scheme}://{parts.netloc}{parts.path}"
    assert re.fullmatch(r"/files/[0-9a-f]{32}\.csv", parts.path)

    assert http.get(url, timeout=10).status_code == 200
    assert http.get(base, timeout=10).status_code == 403
    tampered = {"expires": str(int(query["expires"][0]) + 3600), "signature": query["signature"][0]}
    assert http.get(base, params=tampered, timeout=10).status_code == 403
    assert http.get(url.replace(parts.path, "/files/" + "0" * 32 + ".csv"), timeout=10).status_code == 404

    emulator.configure(failed_file_ttl=0)
    expired = failed_file_url(emulator, http)
    answer = http.get(expired, timeout=10)
    assert answer.status_code == 403 and "expired" in answer.text


def test_a_failed_file_is_kept_only_until_its_link_expires_and_its_link_still_says_expired():
    files = FailedFiles()
    expired = files.store(["PhoneNumber"], [(1, ["1"], "bad")], base_url="", file_format="csv", ttl=0)
    kept = files.store(["PhoneNumber"], [(2, ["2"], "bad")], base_url="", file_format="csv", ttl=3600)

    def get(link):
        path, _, query = link.partition("?")
        return files.serve(path.removeprefix("/files/"), query)

    assert len(files._files) == 1, "the expired file was dropped when the next one came"
    assert get(expired)[0] == 403 and b"expired" in get(expired)[2]
    assert get(kept)[0] == 200 and b"2,bad" in get(kept)[2]


def test_a_partial_success_can_carry_an_empty_failed_file_path_as_in_the_sample(emulator, http):
    emulator.configure(empty_failed_path_on_partial=True)
    transaction_id = upload(http, emulator, [lead_row("9876543210"), lead_row(""), lead_row("1")])
    result = processed(emulator, transaction_id)["result"]
    assert (result["status"], result["numbersNotProcessed"], result["failedFilePath"]) == ("Success", "2", "")


def test_the_failed_file_can_be_xlsx(emulator, http):
    openpyxl = pytest.importorskip("openpyxl")
    emulator.configure(failed_file_format="xlsx")
    url = failed_file_url(emulator, http)
    assert urlsplit(url).path.endswith(".xlsx")
    book = openpyxl.load_workbook(io.BytesIO(http.get(url, timeout=10).content), read_only=True)
    rows = [list(row) for row in book.active.iter_rows(values_only=True)]
    assert rows == [
        [*MAP, "Reason"],
        [None, "Asha Rao", "5", "2030-12-31", "Phone Number is Empty!"],
    ]  # "" reads back as None


# --- Callbacks --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape, content_type",
    [
        ("json-object", "application/json"),
        ("json-string", "application/json"),
        ("form", "application/x-www-form-urlencoded"),
        ("json-string-unescaped", "application/json"),
    ],
)
def test_each_callback_shape_reaches_the_receiver(emulator, http, receiver, shape, content_type):
    emulator.configure(callback_shape=shape)
    transaction_id = upload(http, emulator, [lead_row("9876543210"), lead_row("")], callBackUrl=receiver.url)

    (callback,) = receiver.wait(1)  # sent by the queue worker, on its own

    assert callback["content_type"] == content_type
    if shape == "json-string-unescaped":  # the page's sample, quirk for quirk
        with pytest.raises(json.JSONDecodeError):
            json.loads(callback["body"])
        data = json.loads(UNESCAPED_DATA.fullmatch(callback["body"]).group(1))
    else:
        data = decode_callback(callback)
    assert list(data) == CALLBACK_KEYS and all(isinstance(v, str) for v in data.values())
    assert data["transactionId"] == transaction_id
    assert (data["status"], data["message"]) == ("Success", "File Successfully uploaded.")
    assert [data[key] for key in CALLBACK_KEYS[:3]] == ["2", "1", "1"]
    assert PROVIDER_TIME.fullmatch(data["startDateTime"]) and PROVIDER_TIME.fullmatch(data["endDateTime"])
    assert data["failedFilePath"].startswith(emulator.url + "/files/")
    recorded = emulator.wait_for(lambda s: s["callbacks"] and s["callbacks"][0]["state"] == "answered")
    (record,) = recorded["callbacks"]
    assert (record["url"], record["shape"], record["body"], record["status"]) == (
        receiver.url,
        shape,
        callback["body"],
        200,
    )


def test_callback_values_can_be_padded_with_stray_spaces(emulator, http, receiver):
    emulator.configure(callback_padding=True)
    transaction_id = upload(http, emulator, [lead_row("9876543210")], callBackUrl=receiver.url)
    result = processed(emulator, transaction_id)["result"]

    data = decode_callback(receiver.received[0])

    assert data == {key: f" {value} " for key, value in result.items()}


def test_duplicate_callbacks(emulator, http, receiver):
    emulator.configure(duplicate_callbacks=3)
    processed(emulator, upload(http, emulator, [lead_row("9876543210")], callBackUrl=receiver.url))

    assert len(receiver.received) == 3 and len({r["body"] for r in receiver.received}) == 1
    callbacks = emulator.inspect("callbacks")["callbacks"]
    assert [(c["copy"], c["status"]) for c in callbacks] == [(1, 200), (2, 200), (3, 200)]


def test_a_callback_is_retried_on_5xx_and_each_try_recorded(emulator, http, receiver):
    receiver.statuses.extend([503, 500])
    processed(emulator, upload(http, emulator, [lead_row("9876543210")], callBackUrl=receiver.url))

    (callback,) = emulator.inspect("callbacks")["callbacks"]
    assert [t["status"] for t in callback["tries"]] == [503, 500, 200]
    assert (callback["state"], callback["status"]) == ("answered", 200)
    assert len(receiver.received) == 3


def test_a_callback_answered_4xx_is_not_retried(emulator, http, receiver):
    receiver.statuses.append(400)
    processed(emulator, upload(http, emulator, [lead_row("9876543210")], callBackUrl=receiver.url))
    (callback,) = emulator.inspect("callbacks")["callbacks"]
    assert ([t["status"] for t in callback["tries"]], callback["state"]) == ([400], "answered")


def test_an_unreachable_callback_url_is_tried_and_given_up(emulator, http, receiver):
    url = receiver.url
    receiver.close()
    processed(emulator, upload(http, emulator, [lead_row("9876543210")], callBackUrl=url))
    (callback,) = emulator.inspect("callbacks")["callbacks"]
    assert callback["state"] == "failed" and callback["status"] is None
    assert len(callback["tries"]) == 3 and all(t["error"] for t in callback["tries"])


def test_the_callback_can_come_before_the_synchronous_answer(emulator, http, receiver):
    emulator.configure(callback_before_response=True, process_delay=30)

    answer = send(http, emulator, form(callBackUrl=receiver.url)).json()

    (callback,) = receiver.received  # already there: no waiting
    assert decode_callback(callback)["transactionId"] == answer["transactionId"]


def test_by_default_the_callback_comes_after_the_queue(emulator, http, receiver):
    emulator.configure(process_delay=30)
    transaction_id = upload(http, emulator, [lead_row("9876543210")], callBackUrl=receiver.url)
    assert receiver.received == [] and emulator.inspect("queue")["queue"] == [transaction_id]
    emulator.process_now()
    assert decode_callback(receiver.received[0])["transactionId"] == transaction_id


def test_a_callback_delay_holds_the_callback_after_processing(emulator, http, receiver):
    emulator.configure(callback_delay=30)
    transaction_id = upload(http, emulator, [lead_row("9876543210")], callBackUrl=receiver.url)

    snapshot = emulator.wait_for(lambda s: s["transactions"][0]["state"] == "processed")

    assert [(c["state"], c["tries"]) for c in snapshot["callbacks"]] == [("waiting", [])]
    assert receiver.received == []
    emulator.process_now()
    assert decode_callback(receiver.received[0])["transactionId"] == transaction_id


# --- Faults -----------------------------------------------------------------------------------------------------


def test_forced_error_is_a_500_with_a_non_json_body_and_queues_nothing(emulator, http):
    emulator.force_fault("error")
    response = send(http, emulator)
    assert response.status_code == 500 and response.headers["Content-Type"].startswith("text/html")
    with pytest.raises(ValueError):
        response.json()
    (record,) = emulator.inspect()["requests"]
    assert (record["fault"], record["outcome"], record["counted"], record["http_status"]) == (
        "error",
        "unprocessed",
        False,
        500,
    )
    assert emulator.inspect("transactions")["transactions"] == []


def test_an_error_can_strike_after_the_request_was_queued(emulator, http):
    emulator.configure(faults_after_queue=True)
    emulator.force_fault("error")
    assert send(http, emulator).status_code == 500
    (record,) = emulator.inspect()["requests"]
    assert (record["outcome"], record["counted"]) == ("accepted", True)
    processed(emulator, record["transactionId"])
    assert phones(emulator) == ["9876543210"]


def test_forced_non_json_is_a_200_html_page(emulator, http):
    emulator.force_fault("non_json")
    response = send(http, emulator)
    assert response.status_code == 200 and response.text.lstrip().startswith("<html")
    with pytest.raises(ValueError):
        response.json()


@pytest.mark.smoke
def test_a_dropped_connection_still_counts_and_queues_the_request(emulator, http):
    emulator.force_fault("drop")
    with pytest.raises(requests.ConnectionError):
        send(http, emulator)

    (record,) = emulator.inspect()["requests"]
    assert (record["fault"], record["outcome"], record["counted"]) == ("drop", "accepted", True)
    processed(emulator, record["transactionId"])
    assert phones(emulator) == ["9876543210"]
    assert send(http, emulator).json()["status"] == "success", "the next request is answered normally"


def test_a_slow_answer_times_the_client_out_but_the_request_was_accepted(emulator, http):
    emulator.configure(slow_seconds=0.5)
    emulator.force_fault("slow", 2)
    with pytest.raises(requests.ReadTimeout):
        send(http, emulator, timeout=(5, 0.1))
    started = time.monotonic()
    patient = send(http, emulator, timeout=10)

    assert time.monotonic() - started >= 0.5
    assert patient.json()["status"] == "success"
    records = emulator.inspect()["requests"]
    assert [(r["fault"], r["outcome"]) for r in records] == [("slow", "accepted"), ("slow", "accepted")]


def test_a_forced_rate_limit_answers_as_documented_and_does_not_count(emulator, http):
    emulator.configure(requests_per_window=1)
    emulator.force_fault("rate_limit")
    limited = send(http, emulator)
    accepted = send(http, emulator)
    assert limited.json() == sample("response_rate_limited.json")
    assert accepted.json()["status"] == "success"
    assert [r["counted"] for r in emulator.inspect()["requests"]] == [False, True]


def test_forced_faults_apply_to_the_next_k_requests_only(emulator, http):
    emulator.force_fault("non_json", 2)
    statuses = [send(http, emulator).headers["Content-Type"].split(";")[0] for _ in range(3)]
    assert statuses == ["text/html", "text/html", "application/json"]


def test_random_faults_follow_the_seed(emulator, http):
    emulator.configure(error_rate=0.3, non_json_rate=0.2, requests_per_window=1000, seed=7)

    def run() -> list:
        for _ in range(15):
            send(http, emulator)
        return [r["fault"] for r in emulator.inspect()["requests"]]

    first = run()
    emulator.reset()  # re-seeds
    second = run()
    emulator.configure(seed=8)
    emulator.reset()
    third = run()

    assert first == second and first != third
    assert {"error", "non_json", None} <= set(first)


# --- Control ----------------------------------------------------------------------------------------------------


def test_the_api_key_never_appears_in_inspect(emulator, http, receiver):
    send(http, emulator, form(callBackUrl=f"{receiver.url}?key={API_KEY}"))
    send(http, emulator, form(apiKey=None, apikey=API_KEY))
    send(http, emulator, json=form())
    emulator.process_now()
    assert API_KEY not in json.dumps(emulator.inspect())


def test_invalid_settings_and_faults_are_refused_and_change_nothing(emulator):
    before = emulator.inspect("settings")["settings"]
    for bad in ({"no_such_setting": 1}, {"error_rate": 2}, {"callback_shape": "xml"}, {"max_rows": "many"}):
        with pytest.raises(RuntimeError, match="400"):
            emulator.configure(**bad)
    with pytest.raises(RuntimeError, match="400"):
        emulator.force_fault("meteor")
    assert emulator.inspect("settings")["settings"] == before


def test_reset_clears_the_state_and_keeps_the_settings(emulator, http):
    emulator.configure(max_rows=3, requests_per_window=1)
    processed(emulator, upload(http, emulator, [lead_row("9876543210")]))
    emulator.force_fault("error")

    emulator.reset()

    snapshot = emulator.inspect()
    assert snapshot["settings"]["max_rows"] == 3
    assert (snapshot["requests"], snapshot["transactions"], snapshot["forced_faults"]) == ([], [], [])
    assert snapshot["leads"]["Demo_Outbound"] == []
    assert send(http, emulator).json()["status"] == "success", "the rate-limit history went too"


# --- The process ------------------------------------------------------------------------------------------------


def test_a_config_file_and_flags_set_accounts_dnd_and_limits(start_emulator, tmp_path, http):
    dnd_file = tmp_path / "dnd.txt"
    dnd_file.write_text("# national DND register extract\n9000000008\n")
    config = {
        "accounts": [
            {
                "userName": "acme",
                "apiKey": "acme-key",
                "campaigns": [{"name": "Skills", "type": "outbound", "map": ["PhoneNumber", "skill"]}],
            }
        ],
        "dnd": ["919000000009"],
    }
    emulator = start_emulator("--requests-per-window", "1", "--dnd", str(dnd_file), config=config)
    fields = form(apiKey="acme-key", userName="acme", campaignName="Skills")
    rows = [["9000000009", "Hindi"], ["9000000008", "Tamil"], ["9000000007", "Hindi"]]

    accepted = send(http, emulator, {**fields, "bulkData": bulk(rows, ["PhoneNumber", "skill"])}).json()
    limited = send(http, emulator, fields).json()
    demo = send(http, emulator, form()).json()

    assert (limited, demo) == (sample("response_rate_limited.json"), sample("response_invalid_credentials.json"))
    transaction = processed(emulator, accepted["transactionId"])
    assert [r["reason"] for r in transaction["failed_rows"]] == ["PhoneNumber Added is a DND Number"] * 2
    assert phones(emulator, "Skills") == ["9000000007"]


def test_sigterm_stops_the_emulator_cleanly(start_emulator):
    assert start_emulator().stop() == 0


def test_a_bad_config_is_refused_at_start():
    run = subprocess.run(
        [sys.executable, "-m", "emulator", "--port", "0", "--config", "/nonexistent.json"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert run.returncode == 2 and "config" in run.stderr


def test_the_management_command_passes_its_flags_through(tmp_path):
    log = tmp_path / "command.log"
    with log.open("wb") as out:
        command = subprocess.Popen(
            [sys.executable, "manage.py", "cloudagent_emulator", "--port", "0", "--requests-per-window", "7"],
            cwd=REPO_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"},
        )
    try:
        deadline = time.monotonic() + 30
        while "listening on" not in log.read_text() and command.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        url = re.search(r"listening on (\S+)", log.read_text()).group(1)
        settings = requests.get(f"{url}/_emulator/inspect?sections=settings", timeout=10).json()["settings"]
        assert settings["requests_per_window"] == 7
    finally:
        command.send_signal(signal.SIGTERM)
        command.wait(timeout=10)
    assert command.returncode == 0, log.read_text()


def test_the_emulator_imports_nothing_of_the_project():
    project = ("django", "leadhub", "campaigns", "uploads", "cloudagent", "calls")
    check = (
        "import sys, emulator.server\n"
        f"loaded = sorted(name for name in sys.modules if name.split('.')[0] in {project!r})\n"
        "print(loaded)\n"
    )
    run = subprocess.run([sys.executable, "-c", check], cwd=REPO_ROOT, capture_output=True, text=True, timeout=30)
    assert run.returncode == 0 and run.stdout.strip() == "[]", run.stdout + run.stderr

"""cloudagent/call_summary.py: every body shape a "URL to Push" receiver meets, every hostile body, and the API key
kept out of what is stored (docs/cloudagent-call-summary.md). Plain pytest: no database, no Redis."""

import json
import subprocess
import sys
from datetime import datetime
from email import encoders, policy
from email.mime.application import MIMEApplication
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from pathlib import Path
from urllib.parse import parse_qs, quote_plus, urlencode

import pytest

from cloudagent.call_summary import (
    CUSTOMER_STATUSES,
    DEFAULT_MAX_BYTES,
    DIAL_STATUSES,
    MAX_JSON_DEPTH,
    REDACTED,
    CallSummaryTooLarge,
    MalformedCallSummary,
    call_summary_body_redact,
    call_summary_parse,
)

API_KEY = "KK3f9a0c-live-key-7d21"
FORM = "application/x-www-form-urlencoded"
JSON = "application/json"


def summary_fields(**overrides) -> dict:
    """A call summary as CloudAgent posts it after a dialled, dispositioned outbound call: every value a string."""
    data = {
        "monitorUCID": "7541720672129171",
        "UUI": "Asha Verma",
        "Did": "918040000000",
        "CampaignName": "Demo_Outbound",
        "UserName": "demo_user",
        "CallerID": "9876543210",
        "DialedNumber": "09876543210",
        "Type": "Progressive",
        "StartTime": "2026-11-29 10:15:02",
        "EndTime": "2026-11-29 10:17:09",
        "TimeToAnswer": "00:00:07",
        "CallDuration": "00:02:07",
        "Duration": "00:02:14",
        "DialStatus": "answered",
        "CustomerStatus": "answered",
        "AgentStatus": "answered",
        "AgentID": "agent_7",
        "AgentName": "Ravi",
        "Disposition": "Interested",
        "Comments": "call back after Diwali",
        "AudioFile": "https://recordings.example.test/2026/11/29/7541720672129171.mp3",
        "HangupBy": "CustomerHangup",
        "TransferType": "No Transfers",
        "Skill": "General",
        "Apikey": API_KEY,
    }
    data.update(overrides)
    return data


def form_body(data) -> bytes:
    return urlencode({"data": data if isinstance(data, str) else json.dumps(data)}).encode()


def multipart_body(data: dict, *, as_file: bool = False, name: str = "data") -> tuple[bytes, str]:
    """A multipart/form-data body as an HTTP client writes it: CRLF lines, the part's bytes as they are."""
    envelope = MIMEMultipart("form-data")
    if as_file:
        part = MIMEApplication(json.dumps(data).encode(), "json", _encoder=encoders.encode_noop)
    else:
        part = MIMEText(json.dumps(data), "plain", "utf-8")
        part.replace_header("Content-Transfer-Encoding", "8bit")
        part.set_payload(json.dumps(data))
    disposition = f'form-data; name="{name}"' + ('; filename="data.json"' if as_file else "")
    part.add_header("Content-Disposition", disposition)
    envelope.attach(part)
    body = envelope.as_bytes(policy=policy.HTTP).split(b"\r\n\r\n", 1)[1]  # the body, after the headers
    return body, envelope["Content-Type"]


def body_in_shape(data: dict, shape: str) -> tuple[bytes, str]:
    if shape == "form":
        return form_body(data), FORM
    if shape == "json-object":
        return json.dumps(data).encode(), JSON
    if shape == "json-data-object":
        return json.dumps({"data": data}).encode(), JSON
    if shape == "json-data-string":
        return json.dumps({"data": json.dumps(data)}).encode(), JSON
    if shape == "json-string":
        return json.dumps(json.dumps(data)).encode(), JSON
    if shape == "multipart":
        return multipart_body(data)
    if shape == "multipart-file":
        return multipart_body(data, as_file=True)
    raise ValueError(shape)


SHAPES = ("form", "json-object", "json-data-object", "json-data-string", "json-string", "multipart", "multipart-file")


# --- Shapes --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
def test_every_shape_reads_to_the_same_typed_summary(shape):
    body, content_type = body_in_shape(summary_fields(), shape)

    summary = call_summary_parse(body, content_type)

    assert summary.monitor_ucid == "7541720672129171"
    assert summary.campaign_name == "Demo_Outbound"
    assert summary.user_name == "demo_user"
    assert summary.caller_id == "9876543210"
    assert summary.dialed_number == "09876543210"
    assert summary.uui == "Asha Verma"
    assert summary.call_type == "Progressive"
    assert summary.start_time == datetime(2026, 11, 29, 10, 15, 2)
    assert summary.end_time == datetime(2026, 11, 29, 10, 17, 9)
    assert summary.start_time.tzinfo is None
    assert summary.time_to_answer_seconds == 7
    assert summary.duration_seconds == 127  # CallDuration, not Duration
    assert summary.dial_status == "answered"
    assert summary.customer_status == "answered"
    assert summary.agent_status == "answered"
    assert summary.agent_id == "agent_7"
    assert summary.agent_name == "Ravi"
    assert summary.disposition == "Interested"
    assert summary.comments == "call back after Diwali"
    assert summary.audio_file == "https://recordings.example.test/2026/11/29/7541720672129171.mp3"
    assert summary.hangup_by == "CustomerHangup"
    assert summary.transfer_type == "No Transfers"
    assert summary.skill == "General"
    assert summary.did == "918040000000"


@pytest.mark.parametrize("shape", SHAPES)
def test_the_stored_object_never_holds_the_api_key(shape):
    body, content_type = body_in_shape(summary_fields(), shape)

    summary = call_summary_parse(body, content_type)

    assert "Apikey" not in summary.data
    assert API_KEY not in json.dumps(summary.data)
    assert summary.data == {name: value for name, value in summary_fields().items() if name != "Apikey"}


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", ""])
def test_a_json_body_is_read_whatever_its_label(content_type):
    summary = call_summary_parse(json.dumps({"data": summary_fields()}).encode(), content_type)
    assert summary.monitor_ucid == "7541720672129171"


def test_a_form_body_labelled_json_is_read_as_a_form():
    assert call_summary_parse(form_body(summary_fields()), JSON).caller_id == "9876543210"


def test_a_form_with_unencoded_json_is_read():
    body = ("data=" + json.dumps(summary_fields(), separators=(",", ":")).replace(" ", "%20")).encode()
    assert call_summary_parse(body, FORM).agent_name == "Ravi"


def test_the_first_data_field_of_a_form_wins_and_other_fields_are_ignored():
    body = urlencode([("token", "x"), ("data", json.dumps(summary_fields())), ("data", "not json")]).encode()
    assert call_summary_parse(body, FORM).monitor_ucid == "7541720672129171"


def test_field_names_are_matched_in_any_case():
    data = {"MonitorUcid": "99", "callerid": "9876500000", "DIALSTATUS": "not_answered", "AgentId": "a1"}
    summary = call_summary_parse(json.dumps(data).encode(), JSON)
    assert (summary.monitor_ucid, summary.caller_id, summary.dial_status, summary.agent_id) == (
        "99",
        "9876500000",
        "not_answered",
        "a1",
    )


def test_an_immediate_post_has_no_disposition_and_absent_fields_are_empty():
    summary = call_summary_parse(form_body({"monitorUCID": "1", "DialStatus": "not_answered"}), FORM)
    assert summary.disposition == ""
    assert summary.agent_id == ""
    assert summary.start_time is None
    assert summary.duration_seconds is None
    assert summary.data == {"monitorUCID": "1", "DialStatus": "not_answered"}


def test_text_is_trimmed():
    summary = call_summary_parse(
        form_body(summary_fields(Disposition="  Interested \n", CallerID=" 9876543210 ")), FORM
    )
    assert summary.disposition == "Interested"
    assert summary.caller_id == "9876543210"


# --- Statuses ------------------------------------------------------------------------------------------------


def test_documented_statuses():
    assert DIAL_STATUSES == ("answered", "not_answered", "ring", "invalid_number", "exception")
    assert set(CUSTOMER_STATUSES) >= {
        "answered",
        "not_answered",
        "Busy",
        "Congestion",
        "InvalidNumber",
        "NoResponse",
        "SubcriberAbsent",
    }


@pytest.mark.parametrize(
    "sent, dial_status, customer_status",
    [
        ("Answered", "answered", "answered"),
        ("NOT_ANSWERED", "not_answered", "not_answered"),
        ("busy", "busy", "Busy"),
        ("invalidnumber", "invalidnumber", "InvalidNumber"),
        ("Invalid_Number", "invalid_number", "Invalid_Number"),
        ("user_disconnected", "user_disconnected", "user_disconnected"),  # undocumented: kept as sent
    ],
)
def test_a_documented_status_gets_its_documented_spelling(sent, dial_status, customer_status):
    summary = call_summary_parse(form_body(summary_fields(DialStatus=sent, CustomerStatus=sent)), FORM)
    assert summary.dial_status == dial_status
    assert summary.customer_status == customer_status


# --- Durations and times -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sent, seconds",
    [
        ("00:00:00", 0),
        ("00:02:07", 127),
        ("1:00:01", 3601),
        ("02:07", 127),
        ("45", 45),
        (45, 45),
        ("45.0", 45),
        ("24:00:00", 86400),
        ("24:00:01", None),  # longer than a day: garbage
        ("00:61:00", None),
        ("-5", None),
        ("abc", None),
        ("", None),
        ("9999999", None),
    ],
)
def test_durations_are_whole_seconds(sent, seconds):
    summary = call_summary_parse(form_body(summary_fields(CallDuration=sent, TimeToAnswer=sent)), FORM)
    assert summary.time_to_answer_seconds == seconds
    if sent != "":
        assert summary.duration_seconds == seconds


def test_duration_falls_back_to_duration_when_call_duration_is_empty():
    assert call_summary_parse(form_body(summary_fields(CallDuration="")), FORM).duration_seconds == 134
    fields = summary_fields()
    del fields["CallDuration"]
    assert call_summary_parse(form_body(fields), FORM).duration_seconds == 134


@pytest.mark.parametrize(
    "sent, expected",
    [
        ("2026-11-29 10:15:02", datetime(2026, 11, 29, 10, 15, 2)),
        ("2026-11-29T10:15:02", datetime(2026, 11, 29, 10, 15, 2)),
        ("2000-01-01 00:00:00", datetime(2000, 1, 1)),
        ("2100-12-31 23:59:59", datetime(2100, 12, 31, 23, 59, 59)),
        ("1999-12-31 23:59:59", None),
        ("1970-01-01 05:30:00", None),
        ("2101-01-01 00:00:00", None),
        ("9999-12-31 23:59:59", None),
        ("0000-00-00 00:00:00", None),
        ("2026-02-30 10:00:00", None),
        ("2026-11-29 10:15:02+05:30", None),  # CloudAgent writes no zone; one we would have to guess at
        ("yesterday", None),
        ("", None),
    ],
)
def test_times_are_naive_and_absurd_ones_are_none(sent, expected):
    summary = call_summary_parse(form_body(summary_fields(StartTime=sent, EndTime=sent)), FORM)
    assert summary.start_time == expected
    assert summary.end_time == expected


# --- Values that are not strings -----------------------------------------------------------------------------


def test_numbers_and_booleans_are_read_as_text():
    data = summary_fields(monitorUCID=7541720672129171, AgentID=42, Did=918040000000.0, Comments=True)
    summary = call_summary_parse(json.dumps(data).encode(), JSON)
    assert summary.monitor_ucid == "7541720672129171"
    assert summary.agent_id == "42"
    assert summary.did == "918040000000"
    assert summary.comments == "true"


def test_objects_and_lists_in_optional_fields_read_as_empty_and_stay_in_data():
    data = summary_fields(Comments=["a", "b"], AgentName={"first": "Ravi"}, Disposition=None)
    summary = call_summary_parse(json.dumps(data).encode(), JSON)
    assert summary.comments == ""
    assert summary.agent_name == ""
    assert summary.disposition == ""
    assert summary.data["Comments"] == ["a", "b"]


@pytest.mark.parametrize("value", [{"id": "1"}, ["1"]])
def test_a_monitor_ucid_that_is_not_a_value_is_malformed(value):
    with pytest.raises(MalformedCallSummary, match="monitorUCID"):
        call_summary_parse(json.dumps(summary_fields(monitorUCID=value)).encode(), JSON)


@pytest.mark.parametrize(
    "url, kept",
    [
        ("https://recordings.example.test/a.mp3", True),
        ("http://10.0.0.5/rec/a.wav", True),
        ("javascript:alert(1)", False),
        ("data:text/html,<script>alert(1)</script>", False),
        ("ftp://recordings.example.test/a.mp3", False),
        ("https://", False),
        ("http://[::1", False),
        ("/rec/a.mp3", False),
    ],
)
def test_only_web_links_are_kept_as_the_recording(url, kept):
    summary = call_summary_parse(form_body(summary_fields(AudioFile=url)), FORM)
    assert summary.audio_file == (url if kept else "")
    assert summary.data["AudioFile"] == url


# --- Hostile bodies ------------------------------------------------------------------------------------------


def test_a_body_over_the_cap_is_too_large():
    body = form_body(summary_fields(Comments="x" * 2000))
    with pytest.raises(CallSummaryTooLarge, match=f"over the {len(body) - 1}-byte cap"):
        call_summary_parse(body, FORM, max_bytes=len(body) - 1)
    assert call_summary_parse(body, FORM, max_bytes=len(body)).monitor_ucid == "7541720672129171"


def test_the_default_cap():
    body = json.dumps(summary_fields(Comments="x" * DEFAULT_MAX_BYTES)).encode()
    with pytest.raises(CallSummaryTooLarge):
        call_summary_parse(body, JSON)
    assert issubclass(CallSummaryTooLarge, MalformedCallSummary)


@pytest.mark.parametrize(
    "body, content_type, message",
    [
        (b"", FORM, "empty"),
        (b"  \r\n ", JSON, "empty"),
        (b"[1, 2]", JSON, "not an object"),
        (b"42", JSON, "not valid JSON|not an object"),
        (b"null", JSON, "not valid JSON|not an object"),
        (b'"just text"', JSON, "not an object"),
        (b'{"data": [1]}', JSON, '"data" is not a JSON object'),
        (b'{"data": 7}', JSON, '"data" is not a JSON object'),
        (b'{"data": "not json"}', JSON, '"data" is not valid JSON'),
        (b'{"monitorUCID": "1",', JSON, "not valid JSON"),
        (b'{"monitorUCID": NaN}', JSON, "not valid JSON"),
        (b'{"monitorUCID": "1", "x": Infinity}', JSON, "not valid JSON"),
        (b'{"monitorUCID": "1", "x": 1e400}', JSON, "out of range"),
        (b"monitorUCID=1&CallerID=9876543210", FORM, 'no "data" field'),
        (b"data=%7Bbroken", FORM, '"data" is not valid JSON'),
        (b"data=", FORM, '"data" is not valid JSON'),
        (("a=1&" * 300).encode(), FORM, "cannot be read"),
        (b'{"CallerID": "9876543210"}', JSON, "no monitorUCID"),
        (b'{"monitorUCID": "   "}', JSON, "no monitorUCID"),
        (b'{"monitorUCID": ""}', JSON, "no monitorUCID"),
        (b'{"monitorUCID": "1 OR 1=1; --"}', JSON, "not a CloudAgent call id"),
        (json.dumps({"monitorUCID": "9" * 65}).encode(), JSON, "not a CloudAgent call id"),
    ],
)
def test_malformed_bodies_say_why(body, content_type, message):
    with pytest.raises(MalformedCallSummary, match=message):
        call_summary_parse(body, content_type)


@pytest.mark.parametrize("opener", ["[", '{"a":', '[{"a":'])
def test_deep_nesting_is_malformed_never_a_recursion_error(opener):
    body = (opener * 200_000).encode()
    with pytest.raises(MalformedCallSummary, match="nested"):
        call_summary_parse(body, JSON, max_bytes=len(body))


def test_deep_nesting_inside_the_data_string_is_malformed():
    inner = "[" * 100_000 + "]" * 100_000
    body = json.dumps({"data": inner}).encode()
    with pytest.raises(MalformedCallSummary, match='"data" is JSON nested'):
        call_summary_parse(body, JSON, max_bytes=len(body))


def test_deep_nesting_in_a_form_field_is_malformed():
    body = urlencode({"data": "{" * 50_000}).encode()
    with pytest.raises(MalformedCallSummary, match="nested"):
        call_summary_parse(body, FORM, max_bytes=len(body))


def test_nesting_up_to_the_limit_is_read_and_brackets_in_strings_do_not_count():
    nested = "x"
    for _ in range(MAX_JSON_DEPTH - 2):  # the summary object and its "data" envelope are two levels
        nested = [nested]
    data = summary_fields(Extra=nested, Comments="[[[[{{{{" * 100)
    summary = call_summary_parse(json.dumps({"data": data}).encode(), JSON)
    assert summary.comments == "[[[[{{{{" * 100

    data = summary_fields(Extra=[nested])
    with pytest.raises(MalformedCallSummary, match=f"nested {MAX_JSON_DEPTH + 1} levels"):
        call_summary_parse(json.dumps({"data": data}).encode(), JSON)


def test_an_unterminated_string_full_of_escaped_quotes_is_refused_quickly():
    body = ('{"data": "' + '\\"' * 30_000).encode()
    with pytest.raises(MalformedCallSummary, match="not valid JSON"):
        call_summary_parse(body, JSON)


def test_nul_bytes_and_lone_surrogates_are_stripped_from_values_and_names():
    body = (
        b'{"monitorUCID": "75\\u000041", "AgentName": "Ra\\ud800vi\\u0000", '
        b'"Comments": "ok \\ud83d\\ude00", "Odd\\udfffName\\u0000": "v"}'
    )

    summary = call_summary_parse(body, JSON)

    assert summary.monitor_ucid == "7541"
    assert summary.agent_name == "Ravi"
    assert summary.comments == "ok \N{GRINNING FACE}"  # a valid pair is a character, kept
    assert summary.data["OddName"] == "v"
    json.dumps(summary.data).encode("utf-8")  # storable: no lone surrogate left


def test_nul_bytes_in_a_form_are_stripped():
    body = urlencode({"data": json.dumps({"monitorUCID": "1", "Disposition": "Call\x00back"})}).encode()
    assert call_summary_parse(body, FORM).disposition == "Callback"


def test_bytes_that_are_not_utf8_do_not_lose_the_call():
    body = b'{"monitorUCID": "1", "AgentName": "Ren\xe9e"}'
    summary = call_summary_parse(body, JSON)
    assert summary.monitor_ucid == "1"
    assert summary.agent_name == "Ren\ufffde"


@pytest.mark.parametrize(
    "content_type",
    [
        "multipart/form-data",  # no boundary
        "multipart/form-data; boundary=nothere",
        "multipart/form-data; boundary=x\r\nX-Injected: 1",
    ],
)
def test_multipart_without_readable_parts_is_malformed(content_type):
    body, _ = multipart_body(summary_fields())
    with pytest.raises(MalformedCallSummary, match="multipart"):
        call_summary_parse(body, content_type)


def test_multipart_without_a_data_field_is_malformed():
    body, content_type = multipart_body(summary_fields(), name="payload")
    with pytest.raises(MalformedCallSummary, match='no "data" field'):
        call_summary_parse(body, content_type)


def test_the_parser_imports_no_django_and_no_project_code():
    probe = (
        "import sys, cloudagent.call_summary; "
        "loaded = [m for m in sys.modules if m.split('.')[0] in ('django', 'rq', 'campaigns', 'uploads', 'leadhub')]; "
        "print(loaded)"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=Path(__file__).parents[1]
    )
    assert result.stdout.strip() == "[]"


# --- Redaction of the raw body -------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
def test_redacted_bodies_lose_the_key_and_nothing_else(shape):
    body, content_type = body_in_shape(summary_fields(), shape)

    redacted = call_summary_body_redact(body, content_type)

    assert API_KEY.encode() not in redacted
    assert REDACTED.encode() in redacted or quote_plus(REDACTED).encode() in redacted
    assert call_summary_parse(redacted, content_type) == call_summary_parse(body, content_type)


def test_redaction_keeps_the_rest_of_a_json_body_byte_for_byte():
    body = b'{"data": {"monitorUCID": "1",   "Apikey" : "SECRET", "CallerID": "9876543210"}}'
    assert call_summary_body_redact(body, JSON) == (
        b'{"data": {"monitorUCID": "1",   "Apikey" : "[redacted]", "CallerID": "9876543210"}}'
    )


def test_a_body_without_a_key_is_unchanged():
    without_key = summary_fields()
    del without_key["Apikey"]
    for body, content_type in (
        body_in_shape(without_key, "form"),
        (json.dumps({"data": {"monitorUCID": "1"}}).encode(), JSON),
    ):
        assert call_summary_body_redact(body, content_type) == body


@pytest.mark.parametrize("name", ["Apikey", "apiKey", "APIKEY", "api_key", "ApiKey"])
def test_every_spelling_of_the_key_is_redacted(name):
    data = {"monitorUCID": "1", name: API_KEY}
    for body, content_type in (
        (json.dumps(data).encode(), JSON),
        (json.dumps({"data": json.dumps(data)}).encode(), JSON),
        (form_body(data), FORM),
    ):
        assert API_KEY.encode() not in call_summary_body_redact(body, content_type)
    assert call_summary_parse(json.dumps(data).encode(), JSON).data == {"monitorUCID": "1"}


def test_a_key_that_is_a_number_is_redacted():
    body = b'{"monitorUCID": "1", "Apikey": 123456789}'
    assert call_summary_body_redact(body, JSON) == b'{"monitorUCID": "1", "Apikey": "[redacted]"}'


def test_a_key_nested_deeper_is_dropped_and_redacted():
    data = {"monitorUCID": "1", "extra": {"apikey": API_KEY}}
    body = json.dumps(data).encode()
    assert API_KEY.encode() not in call_summary_body_redact(body, JSON)
    assert call_summary_parse(body, JSON).data == {"monitorUCID": "1", "extra": {}}


@pytest.mark.parametrize(
    "body, content_type",
    [
        (f'{{"data": {{"monitorUCID": "1", "Apikey": "{API_KEY}", "CallerID": '.encode(), JSON),  # cut short
        (f'{{"data":"{{"monitorUCID":"1","Apikey":"{API_KEY}"}}"}}'.encode(), JSON),  # unescaped, like the docs
        (f'{{"data": {{"Apikey": "{API_KEY}'.encode(), JSON),  # unterminated value
        (f"Apikey={API_KEY}&data=%7B%7D".encode(), FORM),  # a form field of its own
        (f'data={{"monitorUCID":"1","Apikey":"{API_KEY}"}}'.encode(), FORM),  # JSON not percent-encoded
        (f'{{"monitorUCID":"1","Apikey":"{API_KEY}"}}'.encode(), FORM),  # mislabelled JSON
        (f"junk&data=%7B%22Apikey%22%3A%22{API_KEY}%22".encode(), "text/plain"),
    ],
)
def test_unparseable_or_odd_bodies_lose_the_key_too(body, content_type):
    assert API_KEY.encode() not in call_summary_body_redact(body, content_type)


def test_a_multipart_part_named_apikey_is_blanked():
    envelope = MIMEMultipart("form-data")
    for name, value in (("data", json.dumps({"monitorUCID": "1"})), ("Apikey", API_KEY)):
        part = MIMEText(value, "plain")
        part.add_header("Content-Disposition", f'form-data; name="{name}"')
        envelope.attach(part)
    body = envelope.as_bytes(policy=policy.HTTP).split(b"\r\n\r\n", 1)[1]

    redacted = call_summary_body_redact(body, envelope["Content-Type"])

    assert API_KEY.encode() not in redacted
    assert call_summary_parse(redacted, envelope["Content-Type"]).monitor_ucid == "1"


def test_redacted_form_stays_a_form():
    redacted = call_summary_body_redact(form_body(summary_fields()), FORM)
    data = json.loads(parse_qs(redacted.decode())["data"][0])
    assert data["Apikey"] == REDACTED
    assert data["CallerID"] == "9876543210"


def test_a_body_that_is_not_utf8_is_redacted_and_still_reads():
    body = b'{"monitorUCID": "1", "AgentName": "Ren\xe9e", "Apikey": "' + API_KEY.encode() + b'"}'

    redacted = call_summary_body_redact(body, JSON)

    assert API_KEY.encode() not in redacted
    assert redacted.decode("utf-8") == '{"monitorUCID": "1", "AgentName": "Ren\ufffde", "Apikey": "[redacted]"}'
    assert call_summary_parse(redacted, JSON).agent_name == "Ren\ufffde"

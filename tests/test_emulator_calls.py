"""The emulator dials accepted leads and posts call summaries to a URL to Push, over real HTTP: one summary per dial
in the documented shape, the outcome mix, immediate and delayed posts, retries, redials, and no dialling without a
URL to Push. Windows are shrunk; "later" is reached with process-now or by polling the receiver."""

import json
import re
from collections import Counter
from urllib.parse import parse_qs

import pytest
import requests

from tests.test_emulator import API_KEY, Receiver, lead_row, upload

SUMMARY_FIELDS = {
    "monitorUCID",
    "CampaignName",
    "UserName",
    "CallerID",
    "DialedNumber",
    "UUI",
    "Type",
    "StartTime",
    "EndTime",
    "TimeToAnswer",
    "CallDuration",
    "Duration",
    "DialStatus",
    "CustomerStatus",
    "AgentStatus",
    "AgentID",
    "AgentName",
    "Disposition",
    "Comments",
    "AudioFile",
    "HangupBy",
    "TransferType",
    "Skill",
    "Did",
    "Apikey",
}
PROVIDER_TIME = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")
HMS = re.compile(r"\d{2}:[0-5]\d:[0-5]\d")
DISPOSITIONS = {"Interested", "Not Interested"}


def summary_of(received: dict) -> dict:
    """The JSON object in the form field `data` (our own reading of the documented shape)."""
    assert received["content_type"].startswith("application/x-www-form-urlencoded")
    (data,) = parse_qs(received["body"], strict_parsing=True)["data"]
    return json.loads(data)


def leads(count: int, start: int = 0) -> list[list]:
    return [lead_row(f"98765{start + i:05d}", name=f"Lead {start + i}") for i in range(count)]


def seconds(hms: str) -> int:
    hours, minutes, secs = (int(part) for part in hms.split(":"))
    return hours * 3600 + minutes * 60 + secs


@pytest.fixture
def http():
    session = requests.Session()
    session.trust_env = False
    yield session
    session.close()


@pytest.fixture
def receiver():
    """Stands in for a URL to Push: records every POST, answers with the statuses queued on it, then 200."""
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def dialling(emulator, receiver):
    """The session's emulator pushing to the receiver, account-wide, at once, without pacing in the way."""
    emulator.set_push_url(receiver.url)
    emulator.configure(push_mode="immediate", dial_rate=1000.0, push_retry_delay=0.05)
    return emulator


def test_nothing_is_dialled_without_a_url_to_push(emulator, http, receiver):
    emulator.set_push_url(receiver.url, campaign="Demo_Second")
    upload(http, emulator, leads(3))
    emulator.process_now()
    assert emulator.inspect("calls")["calls"] == []
    assert receiver.received == []
    assert emulator.inspect("leads")["leads"]["Demo_Outbound"] != []


def test_every_accepted_lead_gets_one_summary_in_the_documented_shape(dialling, http, receiver):
    dialling.configure(push_mode="delayed", dnd=["9876500001"], dial_draw="cycle", dial_outcomes="answered=1,Busy=1")
    rows = [*leads(4), lead_row("12")]  # the DND number and the invalid one are refused: 3 accepted
    transaction_id = upload(http, dialling, rows)
    dialling.process_now()

    summaries = [summary_of(received) for received in receiver.wait(3)]
    assert len(receiver.received) == 3
    assert sorted(s["CallerID"] for s in summaries) == ["9876500000", "9876500002", "9876500003"]
    assert len({s["monitorUCID"] for s in summaries}) == 3
    assert sorted(s["CustomerStatus"] for s in summaries) == ["Busy", "answered", "answered"]
    for summary in summaries:
        assert set(summary) == SUMMARY_FIELDS
        assert all(isinstance(value, str) for value in summary.values())
        assert summary["Apikey"] == API_KEY
        assert (summary["CampaignName"], summary["UserName"], summary["Type"]) == (
            "Demo_Outbound",
            "demo_user",
            "Progressive",
        )
        assert summary["UUI"] == f"Lead {int(summary['CallerID'][-1])}"
        assert summary["DialedNumber"].endswith(summary["CallerID"])
        assert PROVIDER_TIME.fullmatch(summary["StartTime"]) and PROVIDER_TIME.fullmatch(summary["EndTime"])
        assert summary["StartTime"] <= summary["EndTime"]
        assert all(HMS.fullmatch(summary[name]) for name in ("TimeToAnswer", "CallDuration", "Duration"))
        assert seconds(summary["Duration"]) >= seconds(summary["CallDuration"])
        answered = summary["DialStatus"] == "answered"
        assert bool(summary["Disposition"]) == answered == bool(summary["AudioFile"]) == bool(summary["AgentID"])

    for summary in summaries:
        audio = http.get(summary["AudioFile"] or f"{dialling.url}/recordings/{summary['monitorUCID']}.wav", timeout=10)
        assert audio.status_code == (200 if summary["AudioFile"] else 404)
        assert audio.headers["Content-Type"] == ("audio/wav" if summary["AudioFile"] else "application/json")

    calls = dialling.inspect("calls")["calls"]
    assert {call["transactionId"] for call in calls} == {transaction_id}
    assert [post["state"] for call in calls for post in call["posts"]] == ["answered"] * 3
    assert API_KEY not in json.dumps(dialling.inspect())  # the summary's Apikey is blotted out of inspection


def test_an_immediate_summary_has_no_disposition(dialling, http, receiver):
    upload(http, dialling, leads(2))
    dialling.process_now()
    for received in receiver.wait(2):
        assert set(summary_of(received)) == SUMMARY_FIELDS - {"Disposition"}


def test_both_modes_post_at_once_then_later_with_the_disposition_under_the_same_monitor_ucid(dialling, http, receiver):
    dialling.configure(push_mode="both", push_delay=2.0, dial_outcomes="answered=1")
    upload(http, dialling, leads(3))

    summaries = [summary_of(received) for received in receiver.wait(6)]
    first, later = summaries[:3], summaries[3:]
    assert all("Disposition" not in summary for summary in first)
    assert all(
        summary["Disposition"] in {"Interested", "Not Interested", "Call Back Later", "Wrong Number"}
        for summary in later
    )
    assert sorted(s["monitorUCID"] for s in first) == sorted(s["monitorUCID"] for s in later)
    by_ucid = {s["monitorUCID"]: s for s in first}
    for summary in later:
        assert {k: v for k, v in summary.items() if k != "Disposition"} == by_ucid[summary["monitorUCID"]]


def test_a_delayed_summary_waits_for_its_delay(dialling, http, receiver):
    dialling.configure(push_mode="delayed", push_delay=3600.0)
    upload(http, dialling, leads(2))
    snapshot = dialling.wait_for(
        lambda state: len(state["calls"]) == 2 and all(c["state"] == "dialled" for c in state["calls"])
    )
    assert [post["state"] for call in snapshot["calls"] for post in call["posts"]] == ["waiting", "waiting"]
    assert receiver.received == []
    dialling.process_now()  # sends the waiting summaries now
    assert {"Disposition"} <= set(summary_of(receiver.wait(2)[0]))


def test_the_cycle_draw_gives_the_exact_outcome_mix(dialling, http, receiver):
    dialling.configure(
        dial_draw="cycle",
        dial_outcomes="answered=2,Busy=1,not_answered=1",
        dispositions="Interested=1,Not Interested=1",
    )
    dialling.configure(push_mode="delayed")
    upload(http, dialling, leads(8))
    dialling.process_now()
    summaries = [summary_of(received) for received in receiver.wait(8)]
    assert Counter(s["CustomerStatus"] for s in summaries) == {"answered": 4, "Busy": 2, "not_answered": 2}
    assert Counter(s["DialStatus"] for s in summaries) == {"answered": 4, "not_answered": 4}
    assert Counter(s["Disposition"] for s in summaries if s["DialStatus"] == "answered") == {
        "Interested": 2,
        "Not Interested": 2,
    }


def test_a_seed_repeats_the_random_outcomes_and_the_weights_hold_roughly(start_emulator, http, receiver):
    def outcomes(seed: int) -> list[str]:
        emulator = start_emulator("--seed", str(seed), "--push-url", receiver.url, "--push-mode", "immediate")
        emulator.configure(dial_outcomes="answered=3,invalid_number=1", dial_rate=1000.0)
        upload(http, emulator, leads(200), checkDuplicate="false")
        emulator.process_now()
        calls = emulator.inspect("calls")["calls"]
        emulator.stop()
        return [call["outcome"] for call in calls]

    first, again, other = outcomes(7), outcomes(7), outcomes(8)
    assert first == again and first != other
    assert 120 <= Counter(first)["answered"] <= 180 and set(first) == {"answered", "invalid_number"}


def test_a_failed_post_is_tried_again_until_the_receiver_answers_2xx(dialling, http, receiver):
    receiver.statuses.extend([500, 404, 200])
    upload(http, dialling, leads(1))
    dialling.process_now()
    received = receiver.wait(3)
    assert len({r["body"] for r in received}) == 1
    (call,) = dialling.inspect("calls")["calls"]
    (post,) = call["posts"]
    assert [attempt["status"] for attempt in post["tries"]] == [500, 404, 200]
    assert post["state"] == "answered"


def test_a_post_fails_after_its_tries(dialling, http, receiver):
    dialling.configure(push_retries=1)
    receiver.statuses.extend([503, 503, 200])
    upload(http, dialling, leads(1))
    dialling.process_now()
    (call,) = dialling.inspect("calls")["calls"]
    (post,) = call["posts"]
    assert [attempt["status"] for attempt in post["tries"]] == [503, 503]
    assert post["state"] == "failed" and len(receiver.received) == 2


def test_a_post_to_nobody_is_retried_and_fails(dialling, http):
    closed = Receiver()
    closed.close()
    dialling.set_push_url(closed.url)
    upload(http, dialling, leads(1))
    dialling.process_now()
    (call,) = dialling.inspect("calls")["calls"]
    (post,) = call["posts"]
    assert post["state"] == "failed"
    assert len(post["tries"]) == 3 and all(t["status"] is None and t["error"] for t in post["tries"])


def test_a_campaign_dials_at_its_pace(dialling, http, receiver):
    """Each dial has a slot 1/dial_rate after the previous one and never goes before it (a late worker may dial two
    overdue slots back to back, so the gaps between actual dials are not asserted)."""
    dialling.configure(dial_rate=20.0)
    upload(http, dialling, leads(5))
    receiver.wait(5)
    calls = dialling.inspect("calls")["calls"]
    dues = [call["due"] for call in calls]
    assert all(later - earlier == pytest.approx(1 / 20) for earlier, later in zip(dues, dues[1:], strict=False))
    assert all(call["dialled_at"] >= call["due"] for call in calls)


def test_a_number_sent_again_without_check_duplicate_is_dialled_again(dialling, http, receiver):
    upload(http, dialling, leads(1))
    dialling.process_now()
    upload(http, dialling, leads(1), checkDuplicate="false")
    upload(http, dialling, leads(1), checkDuplicate="true")  # refused as a duplicate: no dial
    dialling.process_now()
    summaries = [summary_of(received) for received in receiver.wait(2)]
    assert len(receiver.received) == 2
    assert [s["CallerID"] for s in summaries] == ["9876500000", "9876500000"]
    assert summaries[0]["monitorUCID"] != summaries[1]["monitorUCID"]


def test_a_campaigns_url_to_push_wins_over_the_accounts_and_is_removed_with_an_empty_url(emulator, http, receiver):
    other = Receiver()
    try:
        emulator.set_push_url(other.url)
        shown = emulator.set_push_url(receiver.url, campaign="Demo_Outbound")["push_urls"]
        assert shown["accounts"]["demo_user"] == {
            "account": other.url,
            "campaigns": {"Demo_Outbound": receiver.url, "Demo_Second": other.url},
        }
        emulator.configure(push_mode="immediate", dial_rate=1000.0)
        upload(http, emulator, leads(1))
        upload(http, emulator, leads(1, start=10), campaignName="Demo_Second")
        emulator.process_now()
        assert [summary_of(r)["CampaignName"] for r in receiver.received] == ["Demo_Outbound"]
        assert [summary_of(r)["CampaignName"] for r in other.received] == ["Demo_Second"]

        emulator.set_push_url("", campaign="Demo_Outbound")
        upload(http, emulator, leads(1, start=20))
        emulator.process_now()
        assert len(receiver.received) == 1 and len(other.received) == 2
    finally:
        other.close()


def test_reset_forgets_the_urls_to_push_set_at_run_time(emulator, http, receiver):
    emulator.set_push_url(receiver.url)
    emulator.reset()
    assert emulator.inspect("push_urls")["push_urls"]["accounts"]["demo_user"]["account"] == ""
    upload(http, emulator, leads(1))
    emulator.process_now()
    assert emulator.inspect("calls")["calls"] == []


@pytest.mark.parametrize(
    "body",
    [
        {"userName": "nobody", "url": "http://127.0.0.1:9/x"},
        {"userName": "demo_user", "campaign": "Nope", "url": "http://127.0.0.1:9/x"},
        {"userName": "demo_user", "url": "ftp://127.0.0.1/x"},
        {"url": "http://127.0.0.1:9/x"},
    ],
)
def test_a_bad_push_url_request_is_a_400(emulator, http, body):
    answer = http.post(f"{emulator.url}/_emulator/push-url", json=body, timeout=10)
    assert answer.status_code == 400 and "error" in answer.json()


def test_the_push_url_flag_and_its_environment_default(start_emulator, http, receiver, monkeypatch):
    flagged = start_emulator("--push-url", receiver.url, "--push-mode", "immediate", "--process-delay", "0")
    assert flagged.inspect("settings")["settings"]["push_url"] == receiver.url
    upload(http, flagged, leads(1))
    flagged.process_now()
    assert len(receiver.wait(1)) == 1

    monkeypatch.setenv("CLOUDAGENT_EMULATOR_PUSH_URL", receiver.url + "/from-env")
    assert start_emulator().inspect("settings")["settings"]["push_url"] == receiver.url + "/from-env"
    overridden = start_emulator("--push-url", "")
    assert overridden.inspect("settings")["settings"]["push_url"] == ""


def test_dial_settings_are_checked(emulator, http):
    for bad in ({"dial_outcomes": "answered=1,ringing=2"}, {"dial_outcomes": "answered=0"}, {"dial_rate": 0}):
        answer = http.post(f"{emulator.url}/_emulator/config", json=bad, timeout=10)
        assert answer.status_code == 400, bad


def test_urls_to_push_from_the_config_file_survive_a_reset(start_emulator, http, receiver):
    config = {
        "accounts": [
            {
                "userName": "demo_user",
                "apiKey": API_KEY,
                "pushUrl": receiver.url + "/account",
                "campaigns": [
                    {"name": "Demo_Outbound", "map": ["PhoneNumber", "Name", "Priority", "ExpiryDate"]},
                    {"name": "Demo_Second", "map": ["PhoneNumber", "Name", "Priority", "ExpiryDate"], "pushUrl": ""},
                    {"name": "Own", "map": ["PhoneNumber", "Name"], "pushUrl": receiver.url + "/own"},
                ],
            }
        ]
    }
    emulator = start_emulator("--push-mode", "immediate", config=config)
    emulator.reset()
    assert emulator.inspect("push_urls")["push_urls"]["accounts"]["demo_user"] == {
        "account": receiver.url + "/account",
        "campaigns": {
            "Demo_Outbound": receiver.url + "/account",
            "Demo_Second": receiver.url + "/account",
            "Own": receiver.url + "/own",
        },
    }
    upload(http, emulator, [["9876500000", "Own lead"]], column_map=["PhoneNumber", "Name"], campaignName="Own")
    emulator.process_now()
    (call,) = emulator.inspect("calls")["calls"]
    assert call["push_url"] == receiver.url + "/own" and len(receiver.wait(1)) == 1

"""What a dial of an accepted lead turns into: an outcome drawn from the configured weights and the call summary
CloudAgent posts to the campaign's URL to Push (docs/cloudagent-call-summary.md)."""

from __future__ import annotations

import io
import random
import wave
from collections import defaultdict
from datetime import datetime, timedelta

from emulator.protocol import CALL_OUTCOMES, hms, national_digits, provider_time

HANGUPS = ("CustomerHangup", "AgentHangup")
COMMENTS = {"Interested": "wants a call back with the offer", "Call Back Later": "asked to call after 6 pm"}


class WeightedDraw:
    """Picks a label by weight: seeded random draws ("random"), or a smooth weighted round robin ("cycle"), in
    which every run of sum(weights) picks holds each label exactly its (integer) weight's number of times, so a
    test can assert exact counts."""

    def __init__(self, rng: random.Random):
        self._rng = rng
        self._credit: defaultdict[str, float] = defaultdict(float)

    def pick(self, weights: dict[str, float], how: str) -> str:
        if how == "random":
            return self._rng.choices(list(weights), weights=list(weights.values()))[0]
        for label, weight in weights.items():
            self._credit[label] += weight
        chosen = max(weights, key=lambda label: self._credit[label])
        self._credit[chosen] -= sum(weights.values())
        return chosen


def call_summary(
    *,
    monitor_ucid: str,
    user_name: str,
    api_key: str,
    campaign: str,
    lead: dict[str, str],
    outcome: str,
    disposition: str,
    call_type: str,
    recording_base_url: str,
    ended: datetime,
    rng: random.Random,
) -> dict[str, str]:
    """Every field of one call's summary, every value a string as the provider sends them. Durations are drawn:
    a ring before the answer (short for an invalid number) and, for an answered call, a talk time; the call ends
    at `ended`. "Apikey" is the account's key in plain text: CloudAgent really sends it."""
    dial_status, customer_status = CALL_OUTCOMES[outcome]
    answered = outcome == "answered"
    ring = rng.randint(0, 2) if outcome == "invalid_number" else rng.randint(3, 25)
    talk = rng.randint(15, 300) if answered else 0
    started = ended - timedelta(seconds=ring + talk)
    phone = lead.get("PhoneNumber", "")
    agent_id = (lead.get("AgentId") or "agent1") if answered else ""
    return {
        "monitorUCID": monitor_ucid,
        "CampaignName": campaign,
        "UserName": user_name,
        "CallerID": phone,
        "DialedNumber": "0" + national_digits(phone),
        "UUI": lead.get("Name", ""),
        "Type": call_type,
        "StartTime": provider_time(started),
        "EndTime": provider_time(ended),
        "TimeToAnswer": hms(ring if answered else 0),
        "CallDuration": hms(talk),
        "Duration": hms(ring + talk),
        "DialStatus": dial_status,
        "CustomerStatus": customer_status,
        "AgentStatus": "answered" if answered else "",
        "AgentID": agent_id,
        "AgentName": f"Agent {agent_id}" if agent_id else "",
        "Disposition": disposition,
        "Comments": COMMENTS.get(disposition, ""),
        "AudioFile": f"{recording_base_url}/recordings/{monitor_ucid}.wav" if answered else "",
        "HangupBy": rng.choice(HANGUPS) if answered else "",
        "TransferType": "No Transfers",
        "Skill": lead.get("skill") or lead.get("Skill") or "",
        "Did": "918061234567",
        "Apikey": api_key,
    }


def silent_recording() -> bytes:
    """One second of silence as a WAV file: what an answered call's AudioFile link serves, so a link followed from
    the admin plays."""
    out = io.BytesIO()
    with wave.open(out, "wb") as recording:
        recording.setnchannels(1)
        recording.setsampwidth(2)
        recording.setframerate(8000)
        recording.writeframes(b"\0\0" * 8000)
    return out.getvalue()

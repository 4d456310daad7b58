"""Source profiles: the exports lead files really come from, recognised by their header row.

A profile says which of the export's columns is the lead's phone and name, which columns are worth keeping as
extra fields (the platform's ids, to trace a lead back), and which must never be taken for the phone (IndiaMART's
RECEIVER_MOBILE is the *seller's* own number, on every row). Adding an export is adding an entry to PROFILES:
headers are compared by `header_key` (case, spaces, underscores, dots and hyphens dropped).

What each export looks like (tests/fixtures/sources/ holds a sample of each):
- Meta Lead Ads, "Download leads" in Business Suite / Ads Manager: tab-separated UTF-16 with a BOM; ids written
  `l:…`, `ag:…`, `as:…`, `c:…`, `f:…`; phones `p:+91…`; then one column per form question.
- Google Ads lead form download: the lead's fields under Google's column ids (FULL_NAME, PHONE_NUMBER, EMAIL …)
  beside the lead, form, campaign, ad group and click ids.
- IndiaMART Lead Manager export: the buyer's SENDER_* fields, the seller's RECEIVER_* ones, QUERY_* details.
- JustDial lead export: leadid, name, mobile, phone, email, category, area, city …
- Google Forms responses in Google Sheets: "Timestamp" first, then the form's questions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cloudagent.rules import header_key


@dataclass(frozen=True)
class SourceProfile:
    key: str
    label: str
    # Headers typical of the export; it is recognised when at least `min_signature` of them are in the header.
    signature: tuple[str, ...]
    min_signature: int
    # Campaign field -> the export's headers for it, best first (the first one present is taken).
    fields: dict[str, tuple[str, ...]]
    # Headers kept as the lead's extra fields (ids that trace a lead back to the platform).
    extras: tuple[str, ...] = ()
    # Headers never proposed for any field, whatever their content.
    never: tuple[str, ...] = ()

    def matches(self, keys: set[str]) -> int:
        """How many signature headers the file has; 0 when too few to recognise the export."""
        found = sum(1 for header in self.signature if header_key(header) in keys)
        return found if found >= self.min_signature else 0


PROFILES: tuple[SourceProfile, ...] = (
    SourceProfile(
        key="meta_lead_ads",
        label="Meta Lead Ads download",
        signature=(
            "id",
            "created_time",
            "ad_id",
            "ad_name",
            "adset_id",
            "adset_name",
            "campaign_id",
            "campaign_name",
            "form_id",
            "form_name",
            "is_organic",
            "platform",
        ),  # fmt: skip
        min_signature=5,
        fields={"PhoneNumber": ("phone_number", "phone"), "Name": ("full_name", "first_name")},
        extras=("id", "form_id", "ad_id", "campaign_id", "email"),
    ),
    SourceProfile(
        key="google_ads_lead_form",
        label="Google Ads lead form download",
        signature=(
            "lead_id",
            "form_id",
            "campaign_id",
            "adgroup_id",
            "creative_id",
            "gcl_id",
            "is_test",
            "lead_submit_time",
            "asset_group_id",
        ),  # fmt: skip
        min_signature=3,
        fields={"PhoneNumber": ("PHONE_NUMBER", "WORK_PHONE"), "Name": ("FULL_NAME", "FIRST_NAME")},
        extras=("lead_id", "gcl_id", "campaign_id", "EMAIL"),
    ),
    SourceProfile(
        key="indiamart",
        label="IndiaMART Lead Manager export",
        signature=(
            "UNIQUE_QUERY_ID",
            "QUERY_TYPE",
            "QUERY_TIME",
            "SENDER_NAME",
            "SENDER_MOBILE",
            "SENDER_EMAIL",
            "SENDER_COMPANY",
            "SENDER_CITY",
            "RECEIVER_MOBILE",
            "QUERY_PRODUCT_NAME",
        ),  # fmt: skip
        min_signature=3,
        fields={
            "PhoneNumber": ("SENDER_MOBILE", "SENDER_MOBILE_ALT", "SENDER_PHONE", "SENDER_PHONE_ALT"),
            "Name": ("SENDER_NAME",),
        },
        extras=("UNIQUE_QUERY_ID", "SENDER_COMPANY", "SENDER_CITY", "QUERY_PRODUCT_NAME"),
        never=("RECEIVER_MOBILE", "RECEIVER_CATALOG", "RECEIVER_NAME"),
    ),
    SourceProfile(
        key="justdial",
        label="JustDial lead export",
        signature=(
            "leadid",
            "leadtype",
            "prefix",
            "name",
            "mobile",
            "phone",
            "email",
            "date",
            "category",
            "city",
            "area",
            "brancharea",
            "dncmobile",
            "dncphone",
            "company",
            "pincode",
            "time",
            "branchpin",
            "parentid",
        ),  # fmt: skip
        min_signature=8,
        fields={"PhoneNumber": ("mobile", "phone"), "Name": ("name",)},
        extras=("leadid", "category", "area", "city"),
        never=("dncmobile", "dncphone", "parentid", "branchpin"),
    ),
    SourceProfile(
        key="google_forms",
        label="Google Forms responses (Google Sheets)",
        signature=("Timestamp", "Email Address"),
        min_signature=1,
        fields={
            "PhoneNumber": ("Phone Number", "Phone", "Mobile Number", "Mobile", "WhatsApp Number", "Contact Number"),
            "Name": ("Full Name", "Name", "Your Name"),
        },
        extras=("Timestamp", "Email Address"),
    ),
)


def recognise(header: Sequence[str]) -> SourceProfile | None:
    """The profile the header fits best, if any fits. Google Forms' one-header signature ("Timestamp") loses to any
    export that matches more of its own."""
    keys = {header_key(h) for h in header}
    best, best_score = None, 0
    for profile in PROFILES:
        score = profile.matches(keys)
        if score > best_score:
            best, best_score = profile, score
    return best

"""Campaign-side services: every write to accounts, campaigns and leads goes through functions here."""

from django.db import transaction

from campaigns.models import DOMESTIC_BASE_URL, Campaign, CloudAgentAccount


@transaction.atomic
def account_upsert(*, name: str, user_name: str, api_key: str, base_url: str = "") -> tuple[CloudAgentAccount, bool]:
    """Create the account or bring it up to date; idempotent, so scripts can run it on every deploy."""
    account, created = CloudAgentAccount.objects.select_for_update().get_or_create(
        name=name, defaults={"user_name": user_name, "api_key": api_key, "base_url": base_url or DOMESTIC_BASE_URL}
    )
    if not created:
        account.user_name = user_name
        account.api_key = api_key
        if base_url:
            account.base_url = base_url
    account.full_clean()
    account.save()
    return account, created


@transaction.atomic
def campaign_upsert(
    *,
    name: str,
    account: CloudAgentAccount,
    column_map: list[str],
    phone_region: str = "IN",
    check_duplicate: bool = False,
    skip_existing: bool = False,
    start_after_upload: bool = False,
) -> tuple[Campaign, bool]:
    """Create the campaign or bring it up to date; the column map must match CloudAgent's for the campaign."""
    values = {
        "column_map": [c.strip() for c in column_map if c.strip()],
        "phone_region": phone_region.upper(),
        "check_duplicate": check_duplicate,
        "skip_existing": skip_existing,
        "start_after_upload": start_after_upload,
    }
    campaign = Campaign.objects.select_for_update().filter(account=account, name=name).first()
    created = campaign is None
    if created:
        campaign = Campaign(account=account, name=name)
    for field, value in values.items():
        setattr(campaign, field, value)
    campaign.full_clean()
    campaign.save()
    return campaign, created

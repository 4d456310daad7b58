"""Read-only queries about campaigns and leads."""

from campaigns.models import Campaign, ColumnMappingChoice


class CampaignLookupError(LookupError):
    """The name matches no campaign, or campaigns on several accounts; the message says which."""


def campaign_get_by_name(name: str) -> Campaign:
    """Scripts name a campaign by its CloudAgent name, which is unique per account, not overall."""
    matches = list(Campaign.objects.filter(name=name).select_related("account")[:2])
    if not matches:
        raise CampaignLookupError(f"No campaign named {name!r}.")
    if len(matches) > 1:
        raise CampaignLookupError(f"Several accounts have a campaign named {name!r}.")
    return matches[0]


def column_mapping_remembered(*, campaign: Campaign, header_signature: str) -> dict[str, str]:
    """Header key -> field: the operator's last mapping of a file with this header into this campaign, or {}."""
    choice = ColumnMappingChoice.objects.filter(campaign=campaign, header_signature=header_signature).first()
    return choice.mapping if choice else {}

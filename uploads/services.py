"""Push services: every write to upload transactions and their leads' push states goes through here."""

from django.conf import settings
from django.urls import reverse

from campaigns.models import CloudAgentAccount


def callback_url_for(account: CloudAgentAccount) -> str:
    """The URL CloudAgent posts results to; its secret is the credential (CloudAgent signs nothing)."""
    return settings.LEADHUB_PUBLIC_URL + reverse(
        "cloudagent-callback", kwargs={"secret": account.callback_secret}
    )

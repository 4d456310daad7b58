"""Issue 11, finding 1 and the roles: a matrix of role x admin endpoint. A staff user with no group may do
nothing; Viewers read; Operators also import and push; Managers also export, undo, apply callbacks and edit
accounts and campaigns; the RQ pages need uploads.manage_queues (superusers); transactions and callback events
are records nobody edits or deletes."""

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.urls import reverse

from campaigns.models import LeadImport
from uploads.models import CallbackEvent, UploadTransaction

pytestmark = pytest.mark.django_db

ROLES = ("nobody", "viewer", "operator", "manager", "superuser")
GROUPS = {"viewer": "Viewers", "operator": "Operators", "manager": "Managers"}
READERS = {"viewer", "operator", "manager", "superuser"}
OPERATORS = {"operator", "manager", "superuser"}
MANAGERS = {"manager", "superuser"}


@pytest.fixture
def records(campaign, make_leads):
    make_leads(2)
    upload_transaction = UploadTransaction.objects.create(campaign=campaign, transaction_id="1" * 24)
    event = CallbackEvent.objects.create(account=campaign.account, body="{}", state=CallbackEvent.State.INVALID)
    lead_import = LeadImport.objects.create(campaign=campaign, file_name="x.csv", state=LeadImport.State.FAILED)
    return {"campaign": campaign, "tx": upload_transaction, "event": event, "import": lead_import}


def client_for(role: str) -> Client:
    if role == "superuser":
        user = User.objects.create_superuser(role, f"{role}@example.com", None)
    else:
        user = User.objects.create_user(role, f"{role}@example.com", None, is_staff=True)
        if role in GROUPS:
            user.groups.add(Group.objects.get(name=GROUPS[role]))
    client = Client()
    client.force_login(user)
    return client


def admin_url(name: str, *args) -> str:
    return reverse(f"admin:{name}", args=args)


# (endpoint id, method, url(records), roles allowed)
PAGES = [
    ("lead list", "get", lambda r: admin_url("campaigns_lead_changelist"), READERS),
    ("lead add", "get", lambda r: admin_url("campaigns_lead_add"), OPERATORS),
    ("lead import", "get", lambda r: admin_url("campaigns_lead_import"), OPERATORS),
    ("lead export", "get", lambda r: admin_url("campaigns_lead_export"), MANAGERS),
    ("campaign list", "get", lambda r: admin_url("campaigns_campaign_changelist"), READERS),
    ("campaign add", "get", lambda r: admin_url("campaigns_campaign_add"), MANAGERS),
    ("campaign progress", "get", lambda r: admin_url("campaigns_campaign_progress", r["campaign"].pk), READERS),
    ("account list", "get", lambda r: admin_url("campaigns_cloudagentaccount_changelist"), MANAGERS),
    ("account add", "get", lambda r: admin_url("campaigns_cloudagentaccount_add"), MANAGERS),
    ("import list", "get", lambda r: admin_url("campaigns_leadimport_changelist"), READERS),
    ("import undo", "get", lambda r: admin_url("campaigns_leadimport_undo", r["import"].pk), MANAGERS),
    ("import resume", "post", lambda r: admin_url("campaigns_leadimport_resume", r["import"].pk), OPERATORS),
    ("transaction list", "get", lambda r: admin_url("uploads_uploadtransaction_changelist"), READERS),
    ("transaction view", "get", lambda r: admin_url("uploads_uploadtransaction_change", r["tx"].pk), READERS),
    ("transaction edit", "post", lambda r: admin_url("uploads_uploadtransaction_change", r["tx"].pk), set()),
    ("transaction delete", "get", lambda r: admin_url("uploads_uploadtransaction_delete", r["tx"].pk), set()),
    ("callback list", "get", lambda r: admin_url("uploads_callbackevent_changelist"), READERS),
    ("callback edit", "post", lambda r: admin_url("uploads_callbackevent_change", r["event"].pk), set()),
    ("callback delete", "get", lambda r: admin_url("uploads_callbackevent_delete", r["event"].pk), set()),
    ("call list", "get", lambda r: admin_url("calls_call_changelist"), READERS),
    ("rq home", "get", lambda r: "/admin/rq/", {"superuser"}),
    ("rq empty queue", "post", lambda r: "/admin/rq/queues/1/empty/", {"superuser"}),
]


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("endpoint, method, url, allowed", PAGES, ids=[page[0] for page in PAGES])
def test_role_endpoint_matrix(records, role, endpoint, method, url, allowed, redis_conn):
    """redis_conn: the RQ pages read the tests' own Redis database, emptied around each test."""
    client = client_for(role)
    answer = getattr(client, method)(url(records))
    if role in allowed:
        assert answer.status_code in (200, 302), (endpoint, role, answer.status_code)
        if answer.status_code == 302:
            assert "/login/" not in answer.url
    else:
        assert answer.status_code == 403 or (answer.status_code == 302 and "/login/" in answer.url), (
            endpoint,
            role,
            answer.status_code,
        )


ACTIONS = [
    ("campaigns_lead_changelist", "push_selected_leads", OPERATORS),
    ("campaigns_campaign_changelist", "push_new_leads", OPERATORS),
    ("campaigns_lead_changelist", "redial_selected_leads", OPERATORS),
    ("campaigns_campaign_changelist", "redial_campaign_leads", OPERATORS),
    ("campaigns_cloudagentaccount_changelist", "rotate_callback_secret", MANAGERS),
    ("uploads_uploadtransaction_changelist", "repush_transactions", OPERATORS),
    ("uploads_callbackevent_changelist", "apply_callbacks", MANAGERS),
]


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("changelist, action, allowed", ACTIONS, ids=[a[1] for a in ACTIONS])
def test_role_action_matrix(records, role, changelist, action, allowed):
    page = client_for(role).get(admin_url(changelist))
    offered = set()
    if page.status_code == 200 and page.context.get("action_form") is not None:
        offered = {name for name, _label in page.context["action_form"].fields["action"].choices}
    assert (action in offered) == (role in allowed), (action, role)


@pytest.mark.parametrize("role", ROLES)
def test_the_dashboard_counts_only_what_the_role_may_view(records, role):
    page = client_for(role).get(admin_url("index")).content.decode()
    assert ('id="dashboard-lead-new"' in page) == (role in READERS)
    assert ('id="dashboard-overdue"' in page) == (role in READERS)


def test_only_those_who_may_change_an_account_see_its_callback_url(records):
    account = records["campaign"].account
    url = admin_url("campaigns_cloudagentaccount_change", account.pk)
    page = client_for("manager").get(url).content.decode()
    assert account.callback_secret in page and account.call_summary_secret in page
    viewer = client_for("viewer")
    viewer.user = User.objects.get(username="viewer")
    viewer.user.user_permissions.add(
        *Group.objects.get(name="Managers").permissions.filter(codename="view_cloudagentaccount")
    )
    page = viewer.get(url)
    content = page.content.decode()
    assert page.status_code == 200 and account.callback_secret not in content
    assert account.call_summary_secret not in content

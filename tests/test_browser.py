"""The operator's flows in a real browser (Debian's Chromium through Playwright) against the live server, with
real RQ workers, a real dispatcher and the CloudAgent emulator over HTTP: import a marketplace export through the
column-mapping step, import a big file whose preview and import both run in the background, push leads and watch
them reach the dialer. Each flow ends with a screenshot in the test's folder."""

import csv
import time

import pytest
from playwright.sync_api import Page, expect

from campaigns.models import Lead, LeadImport
from campaigns.queues import IMPORTS_QUEUE
from tests.fixtures.browser import WORKER_TIMEOUT_MS
from uploads.queues import CALLBACKS_QUEUE, DEFAULT_QUEUE

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

Status = Lead.Status


def table_rows(page: Page, selector: str) -> list[list[str]]:
    """The cells' text of every body row of a table (header cells too, for a table without a body)."""
    return page.locator(selector).evaluate(
        """table => [...table.querySelectorAll("tr")]
            .filter(row => !row.closest("thead"))
            .map(row => [...row.cells].map(cell => cell.innerText.trim()))"""
    )


def readonly_field(page: Page, name: str) -> str:
    """A read-only field's value on an admin change page (innermost box: a line of several fields nests)."""
    return page.locator(f".field-{name}:not(:has(.field-{name})) .readonly").inner_text().strip()


def open_import(page: Page) -> None:
    page.get_by_role("link", name="Leads", exact=True).first.click()
    page.get_by_role("link", name="Import", exact=True).click()
    expect(page.get_by_role("heading", name="Import leads")).to_be_visible()


def upload(page: Page, campaign, path) -> None:
    page.get_by_label("Campaign").select_option(str(campaign.pk))
    page.get_by_label("File to import").set_input_files(path)
    page.get_by_label("Format").select_option(label="csv")
    page.get_by_role("button", name="Submit").click()
    expect(page.get_by_role("heading", name=f"Map the columns of {path.name}")).to_be_visible()


def column_fields(page: Page) -> dict[str, str]:
    """The mapping step as it stands: file column -> the campaign field chosen for it."""
    return page.locator("#mapping-columns").evaluate(
        """table => Object.fromEntries([...table.querySelectorAll("tbody tr")].map(
            row => [row.querySelector("label").innerText.trim(), row.querySelector("select").value]))"""
    )


INDIAMART_HEADER = [
    "SENDER_NAME",
    "SENDER_MOBILE",
    "SENDER_MOBILE_ALT",
    "SENDER_CITY",
    "RECEIVER_MOBILE",
    "QUERY_MESSAGE",
]
SELLER = "+91-9812345678"  # IndiaMART's RECEIVER_MOBILE: the seller's own number, on every row


def test_import_of_an_indiamart_export_maps_previews_and_imports_the_good_rows(operator, campaign, lead_file, tmp_path):
    """upload -> map the columns -> preview (counts, rejected rows with line and reason) -> confirm -> the import's
    page; the mapping is offered again for the next file with this header."""
    path = lead_file(
        [
            ["Asha Rao", "+91-9876543210", "", "Pune", SELLER, "2 inch pipes"],
            ["Bad number", "12345", "", "Pune", SELLER, "pipes"],
            ["Harpreet Kaur", "", "+91-9815012345", "Ludhiana", SELLER, "fittings"],
            ["Asha again", "98765-43210", "", "Pune", SELLER, "pipes"],
            ["José", "+91-9876543212", "", "Panaji", SELLER, "valves"],
        ],
        header=INDIAMART_HEADER,
        name="indiamart-leads.csv",
    )
    page = operator

    open_import(page)
    upload(page, campaign, path)
    expect(page.locator("#import-profile")).to_have_text("Recognised: IndiaMART Lead Manager export")
    proposed = column_fields(page)
    assert (proposed["SENDER_MOBILE"], proposed["RECEIVER_MOBILE"]) == ("PhoneNumber", "ignore")
    choice = {
        "SENDER_NAME": "Name",
        "SENDER_MOBILE": "PhoneNumber",
        "SENDER_MOBILE_ALT": "ignore",
        "SENDER_CITY": "extra",
        "RECEIVER_MOBILE": "ignore",
        "QUERY_MESSAGE": "extra",
    }
    for header, field in choice.items():
        page.get_by_label(header, exact=True).select_option(field)
    page.get_by_role("button", name="Preview import").click()

    summary = dict(table_rows(page, "#import-summary"))
    assert summary == {
        "Rows": "5",
        "New leads to import": "2",
        "Duplicates (not imported)": "1",
        "Rejected rows": "2",
        "Warnings": "3",
    }
    assert {row[0]: row[1] for row in table_rows(page, "#import-mapping-used")} == choice
    rejected = [row[:2] for row in table_rows(page, "#rejected-rows")]
    assert rejected == [["3", "'12345' is not a valid number for region IN"], ["4", "PhoneNumber is empty"]]
    expect(page.locator("#import-warnings li")).to_have_text(
        [
            "column 'SENDER_MOBILE_ALT' ignored: your choice",
            "column 'RECEIVER_MOBILE' ignored: your choice",
            "Line 6: Name 'José' is sent as 'Jose'",
        ]
    )
    assert not Lead.objects.exists(), "the preview wrote leads"

    page.get_by_role("button", name="Confirm import").click()

    expect(page.locator(".messagelist")).to_contain_text("Imported:")
    counts = {name: readonly_field(page, name) for name in ("state", "rows", "imported", "duplicates", "rejected")}
    assert counts == {"state": "Completed", "rows": "5", "imported": "2", "duplicates": "1", "rejected": "2"}
    assert [row[0] for row in table_rows(page, "#import-errors")] == ["3", "4"]
    with page.expect_download() as download:
        page.get_by_role("link", name="Download rejected rows").click()
    with open(download.value.path(), encoding="utf-8-sig", newline="") as f:
        rejected_file = [(row["line"], row["SENDER_NAME"], row["reason"]) for row in csv.DictReader(f)]
    assert rejected_file == [
        ("3", "Bad number", "'12345' is not a valid number for region IN"),
        ("4", "Harpreet Kaur", "PhoneNumber is empty"),
    ]
    page.screenshot(path=tmp_path / "import-done.png", full_page=True)
    leads = {lead.phone_number: (lead.name, lead.extra) for lead in Lead.objects.filter(campaign=campaign)}
    assert leads == {
        "+919876543210": ("Asha Rao", {"SENDER_CITY": "Pune", "QUERY_MESSAGE": "2 inch pipes"}),
        "+919876543212": ("Jose", {"SENDER_CITY": "Panaji", "QUERY_MESSAGE": "valves"}),
    }

    open_import(page)
    upload(page, campaign, path)
    assert column_fields(page) == choice, "the operator's mapping is offered for a file with the same header"


def test_a_big_import_previews_and_runs_in_the_background_its_page_following_it_to_the_end(
    operator, campaign, lead_file, settings, start_rq_worker, tmp_path
):
    settings.LEADHUB_IMPORT_BACKGROUND_ROWS = 20
    path = lead_file([[f"98765{i:05d}", f"Lead {i}", "", ""] for i in range(120)])
    page = operator

    open_import(page)
    upload(page, campaign, path)
    assert column_fields(page) == {
        "Phone": "PhoneNumber",
        "Name": "Name",
        "Priority": "Priority",
        "ExpiryDate": "ExpiryDate",
    }
    page.get_by_role("button", name="Preview import").click()

    expect(page.locator(".messagelist")).to_contain_text("The preview runs in the background")
    assert readonly_field(page, "state") == "Previewing"
    expect(page.locator("#preview-running")).to_contain_text("This page reloads itself")
    # The worker starts only now, so the page is seen waiting; from here it reloads itself until the preview is done.
    start_rq_worker(IMPORTS_QUEUE)
    expect(page.locator(".field-state .readonly")).to_have_text("Previewed", timeout=WORKER_TIMEOUT_MS)
    assert dict(table_rows(page, "#import-summary"))["New leads to import"] == "120"
    assert not Lead.objects.exists(), "the preview wrote leads"
    page.get_by_role("button", name="Confirm import").click()

    expect(page.locator(".messagelist")).to_contain_text("runs in the background")
    expect(page.locator(".field-state .readonly")).to_have_text("Completed", timeout=WORKER_TIMEOUT_MS)
    assert readonly_field(page, "imported") == "120"
    expect(page.locator(".field-progress progress")).to_have_attribute("value", "100")
    page.screenshot(path=tmp_path / "background-import-done.png", full_page=True)
    assert LeadImport.objects.get().state == LeadImport.State.COMPLETED
    assert Lead.objects.filter(campaign=campaign).count() == 120


def lead_counts(page: Page) -> dict[str, str]:
    return {row[0]: row[1] for row in table_rows(page, "#content-main table:first-of-type") if len(row) > 1}


def test_push_from_the_lead_list_and_watch_the_leads_reach_the_dialer(
    operator, push_account, push_emulator, campaign, make_leads, start_rq_worker, start_dispatcher, settings, tmp_path
):
    settings.CLOUDAGENT_BATCH_SIZE = 4
    leads = make_leads(10)
    dnd = leads[3].phone_number[3:]
    push_emulator.configure(dnd=[dnd])
    start_dispatcher(LEADHUB_PUBLIC_URL=settings.LEADHUB_PUBLIC_URL)
    start_rq_worker(CALLBACKS_QUEUE, DEFAULT_QUEUE)
    page = operator

    page.get_by_role("link", name="Leads", exact=True).first.click()
    # "Select all" is the admin's script: ticked before the script ran, it ticks only itself (a flaky run sent
    # no selection). Wait for the page's scripts, and for every row to be ticked, before choosing the action.
    page.wait_for_load_state("load")
    page.locator("#action-toggle").check()
    expect(page.locator("input.action-select:checked")).to_have_count(10)
    page.get_by_role("combobox", name="Action").select_option("push_selected_leads")
    page.get_by_role("button", name="Go", exact=True).click()
    expect(page.locator(".messagelist")).to_contain_text("Queued 10 lead(s) in 3 batch(es)")

    page.get_by_role("link", name="Campaigns", exact=True).first.click()
    page.get_by_role("link", name="progress", exact=True).click()
    expect(page.get_by_role("heading", name="Leads (10)")).to_be_visible()

    deadline = time.monotonic() + WORKER_TIMEOUT_MS / 1000
    while True:
        uploaded, failed = page.locator("#lead-uploaded").inner_text(), page.locator("#lead-failed").inner_text()
        if (uploaded, failed) == ("9", "1") or time.monotonic() > deadline:
            break
        time.sleep(0.3)
        page.reload()
    page.screenshot(path=tmp_path / "push-done.png", full_page=True)
    assert (uploaded, failed) == ("9", "1"), f"the progress page still shows {lead_counts(page)}"
    statuses = dict(Lead.objects.values_list("phone_number", "status"))
    assert statuses.pop(f"+91{dnd}") == Status.FAILED
    assert set(statuses.values()) == {Status.UPLOADED}

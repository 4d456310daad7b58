"""The operator's flows in a real browser (Debian's Chromium through Playwright) against the live server, with
real RQ workers and the CloudAgent emulator over HTTP: import a file with bad rows, import a big file in the
background, push leads and watch them reach the dialer. Each flow ends with a screenshot in the test's folder."""

import csv
import time

import pytest
from playwright.sync_api import Page, expect

from campaigns.models import Lead, LeadImport
from tests.fixtures.browser import WORKER_TIMEOUT_MS

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


def test_import_with_bad_rows_previews_them_then_imports_the_rest_and_hands_them_back(
    operator, campaign, lead_file, tmp_path
):
    path = lead_file(
        [
            ["9876543210", "Asha", "", ""],
            ["12345", "Bad number", "", ""],
            ["9876543211", "Meera", "200", ""],
            ["98765-43210", "Again", "", ""],
            ["9876543212", "José", "5", ""],
        ]
    )
    page = operator

    open_import(page)
    upload(page, campaign, path)

    summary = dict(table_rows(page, "#import-summary"))
    assert summary == {
        "Rows": "5",
        "New leads to import": "2",
        "Duplicates (not imported)": "1",
        "Rejected rows": "2",
        "Warnings": "1",
    }
    rejected = [row[:2] for row in table_rows(page, "#rejected-rows")]
    assert rejected == [
        ["3", "'12345' is not a valid number for region IN"],
        ["4", "Priority '200' is not a whole number from 1 to 99"],
    ]
    expect(page.locator("#import-warnings")).to_have_text("Line 6: Name 'José' is sent as 'Jose'")
    assert not Lead.objects.exists(), "the preview wrote leads"

    page.get_by_role("button", name="Confirm import").click()

    expect(page.locator(".messagelist")).to_contain_text("Imported:")
    counts = {name: readonly_field(page, name) for name in ("state", "rows", "imported", "duplicates", "rejected")}
    assert counts == {"state": "Completed", "rows": "5", "imported": "2", "duplicates": "1", "rejected": "2"}
    assert [row[0] for row in table_rows(page, "#import-errors")] == ["3", "4"]
    with page.expect_download() as download:
        page.get_by_role("link", name="Download rejected rows").click()
    with open(download.value.path(), encoding="utf-8-sig", newline="") as f:
        rejected_file = [(row["line"], row["Phone"], row["reason"]) for row in csv.DictReader(f)]
    assert rejected_file == [
        ("3", "12345", "'12345' is not a valid number for region IN"),
        ("4", "9876543211", "Priority '200' is not a whole number from 1 to 99"),
    ]
    page.screenshot(path=tmp_path / "import-done.png", full_page=True)
    leads = dict(Lead.objects.filter(campaign=campaign).values_list("phone_number", "name"))
    assert leads == {"+919876543210": "Asha", "+919876543212": "Jose"}


def test_a_big_import_runs_in_the_background_and_its_page_follows_it_to_the_end(
    operator, campaign, lead_file, settings, start_rq_worker, tmp_path
):
    settings.LEADHUB_IMPORT_BACKGROUND_ROWS = 20
    path = lead_file([[f"98765{i:05d}", f"Lead {i}", "", ""] for i in range(120)])
    page = operator

    open_import(page)
    upload(page, campaign, path)
    assert dict(table_rows(page, "#import-summary"))["New leads to import"] == "120"
    page.get_by_role("button", name="Confirm import").click()

    expect(page.locator(".messagelist")).to_contain_text("runs in the background")
    assert readonly_field(page, "state") == "Pending"
    expect(page.locator(".field-progress progress")).to_have_attribute("value", "0")
    # The worker starts only now, so the page is seen waiting; from here it reloads itself until the import ends.
    start_rq_worker("imports")
    expect(page.locator(".field-state .readonly")).to_have_text("Completed", timeout=WORKER_TIMEOUT_MS)
    assert readonly_field(page, "imported") == "120"
    expect(page.locator(".field-progress progress")).to_have_attribute("value", "100")
    page.screenshot(path=tmp_path / "background-import-done.png", full_page=True)
    assert LeadImport.objects.get().state == LeadImport.State.COMPLETED
    assert Lead.objects.filter(campaign=campaign).count() == 120


def lead_counts(page: Page) -> dict[str, str]:
    return {row[0]: row[1] for row in table_rows(page, "#content-main table:first-of-type") if len(row) > 1}


def test_push_from_the_lead_list_and_watch_the_leads_reach_the_dialer(
    operator, push_account, push_emulator, campaign, make_leads, start_rq_worker, settings, tmp_path
):
    settings.CLOUDAGENT_BATCH_SIZE = 4
    leads = make_leads(10)
    dnd = leads[3].phone_number[3:]
    push_emulator.configure(dnd=[dnd])
    start_rq_worker("push", "callbacks", "default")
    page = operator

    page.get_by_role("link", name="Leads", exact=True).first.click()
    page.locator("#action-toggle").check()
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

"""Admin: the Lead changelist with 1,000,000 leads on PostgreSQL, leadhub's LeadAdmin side by side with a stock
ModelAdmin over the same table (default paginator with COUNT(*), show_full_result_count, an icontains search)."""

import os
import statistics
import sys
import time
import tracemalloc

LEADS = 1_000_000
RUNS = 7


def run(report) -> None:
    from common import drop_database, use_database

    use_database("leadhub_bench_admin")
    from django.contrib import admin
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.urls import clear_url_caches, path
    from import_export.admin import ExportMixin
    from import_export.formats.base_formats import CSV

    from campaigns.models import Campaign, CloudAgentAccount, Lead
    from campaigns.resources import LeadExportResource

    account = CloudAgentAccount.objects.create(name="bench", user_name="u", api_key="k")
    campaign = Campaign.objects.create(account=account, name="Bench")
    started = time.monotonic()
    with connection.cursor() as cursor:
        cursor.execute(
            """INSERT INTO campaigns_lead (campaign_id, phone_number, name, agent_id, skill, status, status_reason,
                   extra, source, created_at, updated_at)
               SELECT %s, '+9197' || lpad(n::text, 8, '0'), 'Lead ' || n, '', '',
                   (ARRAY['new','queued','sent','uploaded','failed'])[1 + n %% 5],
                   CASE WHEN n %% 5 = 4 THEN 'PhoneNumber Added is a DND Number' ELSE '' END,
                   '{}', 'import', now(), now()
               FROM generate_series(1, %s) AS n""",
            [campaign.pk, LEADS],
        )
        cursor.execute("ANALYZE campaigns_lead")
    report("admin", f"leads in the table (built in {time.monotonic() - started:.0f} s)", LEADS)

    stock_site = admin.AdminSite(name="stock")

    class StockLeadAdmin(admin.ModelAdmin):
        list_display = ["phone_number", "name", "campaign", "status", "status_reason", "upload_transaction"]
        list_filter = ["status", "campaign"]
        search_fields = ["phone_number", "name"]

    class StockExportLeadAdmin(ExportMixin, StockLeadAdmin):
        resource_classes = [LeadExportResource]
        export_formats = [CSV]

    stock_site.register(Lead, StockExportLeadAdmin)
    import leadhub.urls

    leadhub.urls.urlpatterns.insert(0, path("stock-admin/", stock_site.urls))
    clear_url_caches()

    user = get_user_model().objects.create_superuser("bench", password="bench")
    client = Client(HTTP_HOST="localhost")  # no test environment: templates render as in production
    client.force_login(user)
    pages = {
        "unfiltered": "",
        "status=failed": "?status=failed",
        "search a phone": "?q=9700012345",
    }
    for label, query in pages.items():
        timings = {}
        for name, prefix in (("leadhub", "/admin/"), ("stock", "/stock-admin/")):
            url = f"{prefix}campaigns/lead/{query}"
            assert client.get(url).status_code == 200, url  # warm
            samples = []
            for _ in range(RUNS):
                t = time.perf_counter()
                client.get(url)
                samples.append((time.perf_counter() - t) * 1000)
            timings[name] = statistics.median(samples)
            report("admin", f"changelist {label}: {name} median ms", round(timings[name], 1))
        report("admin", f"changelist {label}: stock / leadhub", round(timings["stock"] / timings["leadhub"], 1))
    export = {"format": "0", "resource": "0", "leadexportresource_phone_number": "on"}
    export.update({f"leadexportresource_{name}": "on" for name in ("name", "status", "status_reason", "campaign")})
    for name, prefix in (("leadhub", "/admin/"), ("stock", "/stock-admin/")):
        tracemalloc.start()
        t = time.perf_counter()
        response = client.post(f"{prefix}campaigns/lead/export/?status=failed", export)
        body = response.streaming_content if response.streaming else [response.content]
        lines = sum(chunk.count(b"\n") for chunk in body)
        seconds = time.perf_counter() - t
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        report("admin", f"CSV export of status=failed ({lines - 1} leads): {name} s, traced", round(seconds, 1))
        report("admin", f"CSV export of status=failed: {name} peak Python MB (tracemalloc)", round(peak))
    drop_database("leadhub_bench_admin")


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    run(lambda section, name, value: print(f"{section:<8} {name:<60} {value}"))

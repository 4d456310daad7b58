import csv
import json
import random
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from calls.selectors import call_summary_url_for
from campaigns.models import Lead
from campaigns.services import account_upsert, campaign_upsert

DEMO_MAP = ["PhoneNumber", "Name", "Priority", "ExpiryDate"]
FIRST = ["Aarav", "Diya", "Ishaan", "Kavya", "Rohan", "Ananya", "Vihaan", "Saanvi", "José", "Zoë"]
LAST = ["Sharma", "Iyer", "Reddy", "Khan", "Patel", "Nair", "Das", "Müller", "Gupta", "Rao"]


class Command(BaseCommand):
    help = "Seed the demo: an admin login, an account pointed at the emulator, two campaigns, leads, a sample file."

    def add_arguments(self, parser):
        parser.add_argument("--emulator-url", default="http://127.0.0.1:8900")
        parser.add_argument("--username", default="admin")
        parser.add_argument("--password", default="leadhub-demo")
        parser.add_argument("--leads", type=int, default=1200)

    def handle(self, *args, **opts):
        user_model = get_user_model()
        user = user_model.objects.filter(username=opts["username"]).first() or user_model(username=opts["username"])
        user.is_staff = user.is_superuser = True
        user.set_password(opts["password"])
        user.save()
        account, _ = account_upsert(
            name="Demo account",
            user_name="demo_user",
            api_key="demo-api-key-0123456789",
            base_url=opts["emulator_url"],
        )
        campaign, _ = campaign_upsert(name="Demo_Outbound", account=account, column_map=DEMO_MAP)
        campaign_upsert(name="Demo_Second", account=account, column_map=DEMO_MAP)
        rng = random.Random(7)
        leads = [
            Lead(
                campaign=campaign,
                phone_number=f"+91{rng.choice('6789')}{n:09d}",
                name=f"{rng.choice(FIRST)} {rng.choice(LAST)}",
                priority=rng.choice([None, 1, 5, 10]),
            )
            for n in range(opts["leads"])
        ]
        created = Lead.objects.bulk_create(leads, ignore_conflicts=True, batch_size=1000)
        sample = self._sample_file(rng)
        dnd = self._dnd_file(leads[::97])
        payload = {
            "login": [user.username, opts["password"]],
            "leads": len(created),
            "sample_file": str(sample),
            "cdr_url": call_summary_url_for(account),  # the emulator's URL to Push: its calls come back to us
        }
        self.stdout.write(json.dumps({**payload, "dnd_file": str(dnd)}))

    def _dnd_file(self, leads) -> Path:
        """Numbers the demo's CloudAgent treats as Do-Not-Disturb, so a push shows failed leads and reasons."""
        path = Path(settings.BASE_DIR) / "var" / "demo" / "dnd.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"{lead.phone_number[3:]}\n" for lead in leads))
        return path

    def _sample_file(self, rng) -> Path:
        """A messy file of the kind operators receive, to try the import preview on."""
        path = Path(settings.BASE_DIR) / "var" / "demo" / "sample-leads.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        forms = ["+91 9{0:04d} {1:05d}", "09{0:04d}-{1:05d}", "91-9{0:04d}{1:05d}", "(+91) 9{0:04d} {1:05d}"]
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["Mobile No", "Customer Name", "priority", "Expiry", "City"])
            for n in range(200):
                phone = rng.choice(forms).format(n, rng.randrange(100000))
                writer.writerow(
                    [phone, f"{rng.choice(FIRST)} {rng.choice(LAST)}", rng.choice(["", "3", "7"]), "", "Pune"]
                )
            writer.writerow(["12345", "Too Short", "", "", ""])
            writer.writerow(["9812345678", "Bad Priority", "high", "", ""])
            writer.writerow(["9812345679", "Expired", "", "01/01/2020", ""])
        return path

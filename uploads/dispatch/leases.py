"""Which dispatch process serves which account: leases and heartbeats, kept in the database.

In the database rather than Redis because Redis can come back empty (a failover to a replica without the last
writes): ownership must survive that, or a second process would take over accounts whose batches are in flight
and send them again. A lease is renewed for all of a process's accounts in one UPDATE and lapses when the
process dies; times come from the application clock, which the lease length (30 s) dwarfs any NTP skew of.
"""

import math
import os
import secrets
import socket
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from uploads.models import DispatchLease, DispatchNode, UploadTransaction

State = UploadTransaction.State
# A node row not heard from for this long is gone for good; younger ones stay to say when dispatch last ran.
NODE_FORGET_AFTER = timedelta(hours=1)


def dispatch_node_name() -> str:
    """Unique per process start: a restarted process must not inherit the leases of the one it replaces."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def dispatch_node_heartbeat(*, name: str, accounts: int, problem: str = "") -> None:
    """Say this process is alive; recreates its row if it was lost (a restored database)."""
    now = timezone.now()
    updated = DispatchNode.objects.filter(name=name).update(heartbeat_at=now, accounts=accounts, problem=problem[:500])
    if not updated:
        host, pid, _ = name.rsplit(":", 2)
        DispatchNode.objects.get_or_create(
            name=name, defaults={"host": host, "pid": int(pid), "heartbeat_at": now, "problem": problem[:500]}
        )


def dispatch_node_stop(*, name: str) -> None:
    DispatchLease.objects.filter(holder=name).update(holder="", expires_at=timezone.now())
    DispatchNode.objects.filter(name=name).delete()


def dispatch_nodes_forget_dead() -> int:
    return DispatchNode.objects.filter(heartbeat_at__lt=timezone.now() - NODE_FORGET_AFTER).delete()[0]


def dispatch_nodes_live() -> int:
    """Processes that sent a heartbeat within a lease: the ones accounts are shared between."""
    since = timezone.now() - timedelta(seconds=settings.LEADHUB_DISPATCH_LEASE_SECONDS)
    return DispatchNode.objects.filter(heartbeat_at__gte=since).count()


def accounts_with_batches() -> list[int]:
    """Accounts a dispatcher must serve: batches that may be sent (active account and campaign), or left
    `sending` by a process that may be dead."""
    batches = UploadTransaction.objects.filter(
        Q(state=State.PENDING, campaign__is_active=True, campaign__account__is_active=True) | Q(state=State.SENDING)
    )
    return sorted(set(batches.order_by().values_list("campaign__account_id", flat=True).distinct()))


def dispatch_share(*, accounts: int, nodes: int) -> int:
    """How many accounts one process takes: an even share, so adding processes spreads the accounts."""
    return math.ceil(accounts / max(nodes, 1))


def dispatch_lease_take(*, holder: str, account_id: int) -> bool:
    """Take the account if nobody holds it or its holder's lease lapsed; one conditional UPDATE decides."""
    now = timezone.now()
    expires = now + timedelta(seconds=settings.LEADHUB_DISPATCH_LEASE_SECONDS)
    taken = (
        DispatchLease.objects.filter(account_id=account_id)
        .filter(Q(holder="") | Q(expires_at__lt=now))
        .update(holder=holder, expires_at=expires)
    )
    if taken:
        return True
    if DispatchLease.objects.filter(account_id=account_id).exists():
        return False
    try:
        with transaction.atomic():
            DispatchLease.objects.create(account_id=account_id, holder=holder, expires_at=expires)
    except IntegrityError:  # another process created it first: it is theirs
        return False
    return True


def dispatch_leases_renew(*, holder: str, account_ids) -> set[int]:
    """Renew every lease this process holds in one UPDATE; returns the accounts still ours (one taken over
    after a lapse is not)."""
    ids = list(account_ids)
    if not ids:
        return set()
    expires = timezone.now() + timedelta(seconds=settings.LEADHUB_DISPATCH_LEASE_SECONDS)
    leases = DispatchLease.objects.filter(holder=holder, account_id__in=ids)
    leases.update(expires_at=expires)
    return set(leases.values_list("account_id", flat=True))


def dispatch_lease_release(*, holder: str, account_id: int) -> None:
    DispatchLease.objects.filter(holder=holder, account_id=account_id).update(holder="", expires_at=timezone.now())

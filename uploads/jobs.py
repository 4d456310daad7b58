"""RQ jobs: ids in, one service call. Each job is named after the service it wraps, with a _job suffix."""

from uploads import dispatcher


def account_dispatch_job(account_id: int) -> dict:
    dispatcher.clear_queued_marker(account_id)
    report = dispatcher.account_dispatch(account_id=account_id)
    return {"outcomes": report.outcomes, "recovered": report.recovered, "busy": report.busy}


def push_watchdog_job() -> list[int]:
    """Runs every LEADHUB_WATCHDOG_SECONDS while any batch is unfinished, rescheduling itself."""
    dispatcher.clear_watchdog_marker()
    started = dispatcher.push_watchdog()
    if dispatcher.unfinished_batches_exist():
        dispatcher.watchdog_ensure()
    return started

"""Emulator of Ozonetel CloudAgent for the demo, the tests and the benchmarks: the "Add Campaign Bulk Data (V4)"
API with its queue and callbacks, the failed-rows files, and the dialling of accepted leads with the call summaries
posted to a "URL to Push" (docs/cloudagent-contract.md, docs/cloudagent-call-summary.md).

Standard library only, and no leadhub import: it shares no code with our client (cloudagent/), so it catches the
client's mistakes instead of repeating them. Whatever the contract marks as inferred, and every choice made here
where the provider is silent, is a setting, so tests can try each reading.

    python -m emulator [--port 8900] [--config FILE] [...]      (--help lists every setting)

Modules: settings (flags), protocol (parsing, documented answers, bodies), engine (state, queue, row checks,
rate limit, dialling), dialer (outcomes and call summaries), delivery (outbound POSTs with retries), files
(signed failed-rows files), server (HTTP, config file, command line).
"""

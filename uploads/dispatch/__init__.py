"""The dispatch service: one loop per process sends every owned account's batches at that account's pace.

CloudAgent limits each account, not us, so throughput must grow with accounts, not with processes. A process
(`manage.py run_dispatcher`) owns a share of the accounts that have batches through database leases
(leases.py), keeps each owned account's next send slot in a heap and hands the sends to a small thread pool
(engine.py); no thread waits for an account's slot. The Redis pacer (uploads/ratelimit.py) keeps the limit
across every process and machine, and the database says what is unfinished, so every process rediscovers its
work from it (recovery.py) instead of from jobs kept in Redis.
"""

"""`make bench`: run every benchmark in one go and print their figures side by side at the end.

Each bench module has `run(report)`; `report(section, name, value)` records one figure. Each bench runs in a
forked child, because each sets Django up on a database of its own."""

import importlib
import json
import os
import sys
import time
import traceback
from pathlib import Path

BENCHES = [
    "bench_import",
    "bench_dispatch_accounts",
    "bench_dispatch_many",
    "bench_dispatch_faults",
    "bench_callback",
    "bench_calls",
    "bench_admin",
    "bench_pacer",
]

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def run_in_child(name: str) -> tuple[list, bool]:
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        out = os.fdopen(write_end, "w", buffering=1)

        def report(section: str, figure: str, value) -> None:
            print(f"  {section:<10} {figure:<60} {value}", flush=True)
            out.write(json.dumps([section, figure, value]) + "\n")

        code = 0
        try:
            importlib.import_module(name).run(report)
        except Exception:
            traceback.print_exc()
            code = 1
        out.close()
        os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end) as lines:
        rows = [json.loads(line) for line in lines]
    _, status = os.waitpid(pid, 0)
    return rows, status == 0


def main() -> int:
    rows, failed = [], []
    for name in sys.argv[1:] or BENCHES:
        print(f"== {name}", flush=True)
        started = time.monotonic()
        got, ok = run_in_child(name)
        rows += got
        if not ok:
            failed.append(name)
        print(f"   ({time.monotonic() - started:.0f} s)", flush=True)
    print("\n== summary")
    for section, figure, value in rows:
        shown = f"{value:,.3f}".rstrip("0").rstrip(".") if isinstance(value, float) else value
        print(f"  {section:<10} {figure:<60} {shown}")
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

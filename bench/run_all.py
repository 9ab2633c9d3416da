"""Run every benchmark, each in its own process with its own fresh runtime:
``python -m bench.run_all [name ...]``. Tables go to stdout, JSON to bench/results/<name>.json."""

from __future__ import annotations

import subprocess
import sys
import time

BENCHMARKS = ("session_start", "turn_overhead", "throughput", "streaming", "memory", "passivation", "tool_fanout",
              "chat_cost", "chat_load", "stream_latency", "ws_deflate", "store_turn_cost")


def main(names: list[str]) -> int:
    failed = []
    for name in names or BENCHMARKS:
        began = time.monotonic()
        # Ray's own log lines go to stderr; the table is all that reaches stdout.
        done = subprocess.run([sys.executable, "-m", f"bench.{name}"], stderr=subprocess.DEVNULL, check=False)
        print(f"  ({name}: {time.monotonic() - began:.0f} s, exit {done.returncode})", flush=True)
        if done.returncode:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

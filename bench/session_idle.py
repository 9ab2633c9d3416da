"""What a session process costs before it does any work: the import of ``actors.chat_session``
(``python -X importtime``), how long the pool takes to boot one (start + ``prepare``), the memory
of a pooled and of a resident session actor (PSS and USS), and the idle CPU of POOLED pooled
actors with Ray's defaults beside the same with Ray's periodic reporting slowed down
(``REPORTING_SLOWED``), in one run. CPU figures are the median of RUNS windows with the spread.

Exits 1 when an idle pooled actor costs more than TARGET_MILLICORES with Ray's defaults.
Usage: python -m bench.session_idle
"""

from __future__ import annotations

import asyncio
import os
import re
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from bench.harness import Runtime, _descendants, report, runtime
from mozaiks.client import ChatConnection
from tests.fake_openai import FakeOpenAI, FakeResponse

POOLED = 20
RUNS = 3
WINDOW_S = 10.0
SETTLE_S = 5.0
PAUSE_S = 15.0  # between the two runtimes, for the first one's processes to end
TARGET_MILLICORES = 2.0  # per idle pooled actor: 100 of them within the 0.05 cores
# Ray's documented periodic work of a worker (src/ray/common/ray_config_def.h), ten times rarer.
REPORTING_SLOWED = {
    "RAY_task_events_report_interval_ms": "10000",  # task state events to the GCS (default 1 s)
    "RAY_metrics_report_interval_ms": "60000",  # metrics to the node's agent (default 10 s)
    "RAY_core_worker_internal_heartbeat_ms": "10000",  # loads to the raylet (default 1 s)
    "RAY_report_worker_backlog_interval_ms": "10000",  # backlog for the autoscaler (default 1 s)
    "RAY_raylet_death_check_interval_milliseconds": "10000",  # is my raylet alive (default 1 s)
    "RAY_event_stats": "0",  # per-handler timing of every event-loop callback
}
IMPORT_PROBE = ("import ray, ray.actor, ray.exceptions; import time; began = time.perf_counter(); "
                "import actors.chat_session; print(time.perf_counter() - began)")


def import_cost() -> dict[str, Any]:
    """The import of the session actor's module in a process that has Ray already (a worker
    does): wall time, median of RUNS, and the modules whose own import took longest."""
    seconds, tops = [], {}
    for _ in range(RUNS):
        done = subprocess.run([sys.executable, "-X", "importtime", "-c", IMPORT_PROBE], capture_output=True,
                              text=True, check=True, cwd=Path(__file__).resolve().parents[1])
        seconds.append(float(done.stdout.strip()))
        tops = _own_import_times(done.stderr)
    return {"import_ms": [round(statistics.median(seconds) * 1000), round(min(seconds) * 1000),
                          round(max(seconds) * 1000)],
            "slowest_own_imports_ms": dict(sorted(tops.items(), key=lambda kv: -kv[1])[:8])}


def _own_import_times(trace: str) -> dict[str, float]:
    """Self time per module of what ``actors.chat_session`` pulled in (the last run)."""
    rows = [match.groups() for match in re.finditer(r"import time:\s+(\d+) \|\s+\d+ \| ( *)(\S+)", trace)]
    start = max(index for index, (_, indent, name) in enumerate(rows) if name == "actors.chat_session" and not indent)
    first = start
    while first > 0 and rows[first - 1][1]:
        first -= 1
    return {name: round(int(us) / 1000, 1) for us, _, name in rows[first:start + 1]}


def _pids_of(marker: str) -> list[int]:
    found = []
    for pid in _descendants(os.getpid()):
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(marker.encode()):
                found.append(pid)
        except OSError:
            continue
    return found


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _memory_mb(pid: int) -> dict[str, float]:
    """PSS (shared pages split among their users) and USS (this process' own pages)."""
    fields = {line.split(":")[0]: int(line.split()[1]) for line in
              Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]}
    return {"pss_mb": round(fields["Pss"] / 1024, 1),
            "uss_mb": round((fields["Private_Clean"] + fields["Private_Dirty"]) / 1024, 1)}


async def _idle_millicores(pids: list[int]) -> list[float]:
    """Per window: the median idle CPU of one of these processes, in millicores."""
    windows = []
    for _ in range(RUNS):
        before = {pid: _cpu_s(pid) for pid in pids}
        await asyncio.sleep(WINDOW_S)
        windows.append(statistics.median((_cpu_s(pid) - before[pid]) * 1000 / WINDOW_S for pid in pids))
    return windows


async def measure(rt: Runtime) -> dict[str, Any]:
    directory = rt.directory()
    await directory.configure(warm_pool_size=POOLED, warm_pool_max=POOLED)
    while (await directory.stats()).pool < POOLED:
        await asyncio.sleep(0.5)
    await asyncio.sleep(SETTLE_S)
    pooled = _pids_of("ray::ChatSession")
    idle = await _idle_millicores(pooled)
    pooled_memory = [_memory_mb(pid) for pid in pooled]
    async with rt.broker(f"idler-{uuid.uuid4().hex[:6]}") as broker:
        session = await broker.create_session("bench_duo_openai")
        conn = await ChatConnection.open(session.ws_url, session.runtime_token, last_seq=None)
        await conn.send({"type": "user.input.submit", "id": uuid.uuid4().hex, "text": "hello"}, wait_ack=False)
        while (await conn.next_event(timeout=60))["type"] != "chat.input_request":
            pass
        resident = await (await directory.peek(session.chat_id)).pid()
        resident_memory = _memory_mb(resident)
        await conn.close()
    stats = await directory.stats()
    return {"pooled": len(pooled), "idle_millicores_per_pooled_actor": idle,
            "pooled_actor_memory": {key: statistics.median(m[key] for m in pooled_memory) for key in ("pss_mb", "uss_mb")},
            "resident_actor_memory": resident_memory, "boot_s": round(stats.boot_s, 2),
            "load_average_1m": round(os.getloadavg()[0], 2)}


def run(env: dict[str, str]) -> dict[str, Any]:
    """One runtime with ``env`` set; a second try when Ray does not come up in time (the previous
    cluster's processes may still be ending on a loaded machine)."""
    try:
        return _run_once(env)
    except Exception as error:  # ray's node start raises a bare Exception on its timeout
        if "timed out during startup" not in str(error):
            raise
        time.sleep(PAUSE_S)
        return _run_once(env)


def _run_once(env: dict[str, str]) -> dict[str, Any]:
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)  # before Ray starts: its raylet passes them on to every worker
    try:
        with FakeOpenAI(default=lambda body: FakeResponse(text="hi")) as server:
            with runtime(num_cpus=2, openai_base_url=server.base_url, openai_api_key="bench-key",
                         idle_timeout_s=120.0) as rt:
                return asyncio.run(measure(rt))
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _spread(values: list[float]) -> list[float]:
    return [round(statistics.median(values), 2), round(min(values), 2), round(max(values), 2)]


def main() -> int:
    began = time.time()
    imports = import_cost()
    defaults = run({})
    print("Ray defaults:", defaults, flush=True)
    time.sleep(PAUSE_S)
    slowed = run(REPORTING_SLOWED)
    print("reporting slowed:", slowed, flush=True)
    rows = [["idle CPU per pooled actor (millicores)", *_spread(defaults["idle_millicores_per_pooled_actor"]),
             *_spread(slowed["idle_millicores_per_pooled_actor"])]]
    for label, key in (("pooled actor", "pooled_actor_memory"), ("resident actor", "resident_actor_memory")):
        for unit in ("pss_mb", "uss_mb"):
            rows.append([f"{label} {unit}", defaults[key][unit], "", "", slowed[key][unit], "", ""])
    rows.append(["boot (start + prepare), s", defaults["boot_s"], "", "", slowed["boot_s"], "", ""])
    met = statistics.median(defaults["idle_millicores_per_pooled_actor"]) <= TARGET_MILLICORES
    results = {"imports": imports, "ray_defaults": defaults, "reporting_slowed": slowed,
               "reporting_slowed_env": REPORTING_SLOWED, "seconds": round(time.time() - began),
               "targets": {f"idle pooled actor <= {TARGET_MILLICORES} millicores": met}}
    report("session_idle", f"A session process before it works ({POOLED} pooled actors): median [min, max]",
           ["figure", "Ray defaults", "min", "max", "reporting slowed", "min", "max"], rows, results,
           notes=[f"import of actors.chat_session after ray: {imports['import_ms']} ms (median, min, max)",
                  f"slowest own imports (ms): {imports['slowest_own_imports_ms']}",
                  f"load average: {defaults['load_average_1m']} / {slowed['load_average_1m']}",
                  f"{'met' if met else 'MISSED'}: idle pooled actor <= {TARGET_MILLICORES} millicores"])
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())

"""Resident memory per active session, and how many resident sessions this node holds.

Activates SESSIONS chats (each has had one turn and waits for its user), then reads every session
actor process's memory from /proc: RSS (counts shared pages in full), PSS (shared pages split
between their users) and USS (pages only that process has — what one more session really costs).
The node's MemAvailable before and after gives the same number from the kernel's side.
Baseline: an idle Ray actor process that imports nothing of ours, measured the same way.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import ray

from bench.harness import Runtime, report, runtime
from bench.throughput import _open_chats

SESSIONS = 100


def _process_mb(pid: int) -> dict[str, float]:
    fields = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, value = line.split(":", 1)
        fields[name] = int(value.split()[0])
    uss = fields["Private_Clean"] + fields["Private_Dirty"]
    return {"rss": fields["Rss"] / 1024, "pss": fields["Pss"] / 1024, "uss": uss / 1024}


def _available_mb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no MemAvailable in /proc/meminfo")


@ray.remote(num_cpus=0)
class _BareActor:
    def pid(self) -> int:
        import os

        return os.getpid()


def _mean(samples: list[dict[str, float]], key: str) -> float:
    return round(sum(s[key] for s in samples) / len(samples), 1)


async def main(rt: Runtime) -> None:
    available_before = _available_mb()
    chats = await _open_chats(rt, SESSIONS)
    await asyncio.sleep(2)  # let allocations settle
    available_after = _available_mb()
    directory = rt.directory()
    pids = [await (await directory.peek(conn.meta["chat_id"])).pid() for conn, _ in chats]
    sessions = [_process_mb(pid) for pid in pids]
    bare_actors = [_BareActor.remote() for _ in range(3)]
    bare = [_process_mb(ray.get(a.pid.remote())) for a in bare_actors]
    for conn, _ in chats:
        await conn.close()
    node_per_session = round((available_before - available_after) / SESSIONS, 1)
    per_session_uss = _mean(sessions, "uss")
    most = int(available_after / per_session_uss) + SESSIONS
    results = {"sessions": SESSIONS, "session_mb": {k: _mean(sessions, k) for k in ("rss", "pss", "uss")},
               "bare_ray_actor_mb": {k: _mean(bare, k) for k in ("rss", "pss", "uss")},
               "node_available_drop_per_session_mb": node_per_session,
               "available_after_mb": round(available_after), "most_resident_sessions_estimate": most}
    rows = [["session actor (bound, idle)", *results["session_mb"].values()],
            ["bare Ray actor (baseline)", *results["bare_ray_actor_mb"].values()]]
    report("memory", f"Memory per resident session ({SESSIONS} sessions resident, MB)",
           ["process", "RSS", "PSS", "USS"], rows, results,
           notes=[f"node MemAvailable dropped {node_per_session} MB per session",
                  f"most resident sessions this node holds: ~{most} (MemAvailable / USS per session)",
                  "target: <= 60 MB per resident session"])


if __name__ == "__main__":
    with runtime(max_resident_sessions=1000) as rt:
        asyncio.run(main(rt))

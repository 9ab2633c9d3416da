"""Soak: the chaos suite (tests/chaos) for longer. Waves of ``--chats`` chats of ``chaos_mix`` run
one after another for ``--minutes``; during each wave a seeded schedule SIGKILLs session actors,
the ingress replica and the directory. After each wave every chat's invariants are checked and
the cluster's memory (PSS of all its processes) is sampled; the report gives the invariants
held, the kills, and memory over time with its slope once steady (the first wave excluded).

    .venv/bin/python -m bench.soak --minutes 4 --chats 40 --seed 7
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import time
from pathlib import Path
from typing import Any

from bench.harness import APP_ID, Runtime, _descendants, report, runtime
from bench.memory import _process_mb
from tests.chaos.chaos_support import ChatDriver, run_schedule, schedule, violations

CHAOS_WORKFLOW = Path(__file__).resolve().parent.parent / "tests" / "workflows" / "chaos_mix"
WAVE_BOUND_S = 600.0


def _cluster_pss_mb() -> float:
    total = 0.0
    for pid in _descendants(os.getpid()):
        try:
            total += _process_mb(pid)["pss"]
        except (OSError, KeyError):
            continue  # gone meanwhile
    return total


def _slope_mb_per_min(samples: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, MB), per minute."""
    if len(samples) < 3:
        return None
    xs, ys = [t for t, _ in samples], [m for _, m in samples]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs)
    return 60 * sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var if var else None


async def _wave(rt: Runtime, wave: int, chats: int, seed: int, markers: Path) -> dict[str, Any]:
    user = f"soak-{wave}"
    plan = schedule(seed, rounds=3, span_s=10.0)
    async with rt.broker(user) as broker:
        drivers = []
        for i in range(chats):
            marker = markers / f"w{wave}-{i}"
            drivers.append(ChatDriver(await broker.create_session("chaos_mix", context={"marker": str(marker)}), marker))
        started = time.monotonic()
        tasks = [asyncio.create_task(d.run()) for d in drivers]
        kills = await run_schedule(plan, drivers, seed)
        _, late = await asyncio.wait(tasks, timeout=WAVE_BOUND_S)
        for task in late:
            task.cancel()
        took = time.monotonic() - started
        broken = {d.session.chat_id: [f"not finished within {WAVE_BOUND_S:.0f} s (seq {d.last_seq}, acks {d.acks})"]
                  for d, t in zip(drivers, tasks, strict=True) if t in late}
        broken |= {d.session.chat_id: v for d, t in zip(drivers, tasks, strict=True)
                   if t not in late and (v := await violations(broker, rt.settings.resolved_store_url, APP_ID, user, d))}
    return {"wave": wave, "seed": seed, "seconds": round(took, 1), "kills": [str(k) for k in kills],
            "killed": sum(len(k.targets) for k in kills), "chats": chats, "broken": broken,
            "reconnects": sum(d.connections - 1 for d in drivers)}


async def _soak(rt: Runtime, minutes: float, chats: int, seed: int) -> dict[str, Any]:
    markers = Path(rt.settings.data_dir) / "markers"
    markers.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    start = time.monotonic()
    waves, memory = [], [(0.0, _cluster_pss_mb())]
    while time.monotonic() - start < minutes * 60:
        result = await _wave(rt, len(waves), chats, rng.randrange(1 << 32), markers)
        waves.append(result)
        memory.append((time.monotonic() - start, _cluster_pss_mb()))
        print(f"wave {result['wave']}: {result['seconds']} s, killed {result['killed']}, "
              f"broken {len(result['broken'])}, PSS {memory[-1][1]:.0f} MB; {'; '.join(result['kills'])}", flush=True)
    return {"waves": waves, "memory": memory, "slope_mb_per_min": _slope_mb_per_min(memory[2:])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--chats", type=int, default=200)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 32)
    print(f"soak seed={seed} minutes={args.minutes} chats per wave={args.chats}", flush=True)
    with runtime(num_cpus=4, extra_workflows=[CHAOS_WORKFLOW]) as rt:
        results = asyncio.run(_soak(rt, args.minutes, args.chats, seed))
    waves = results["waves"]
    rows = [[w["wave"], w["chats"], w["seconds"], w["killed"], w["reconnects"], len(w["broken"]),
             round(results["memory"][i + 1][1])] for i, w in enumerate(waves)]
    slope = results["slope_mb_per_min"]
    notes = [f"seed {seed}; chats {sum(w['chats'] for w in waves)}; processes killed {sum(w['killed'] for w in waves)}; "
             f"chats with a broken invariant {sum(len(w['broken']) for w in waves)}",
             f"memory slope after the first wave: {'n/a' if slope is None else f'{slope:+.1f} MB/min'}"]
    report("soak", "Soak: waves of chats under seeded kills", ["wave", "chats", "s", "killed", "reconnects",
                                                              "broken", "cluster PSS MB"], rows,
           {**results, "seed": seed}, notes)


if __name__ == "__main__":
    main()

"""Soak: the chaos suite (tests/chaos) for longer. Waves of ``--chats`` chats of ``chaos_mix`` run
one after another for ``--minutes``; during each wave a seeded schedule SIGKILLs session actors,
the ingress replica and the directory. After each wave every chat's invariants are checked; the
cluster's memory (PSS of all its processes) is sampled every ``--sample-s`` throughout. The report
gives the invariants held, the kills, and memory over time with its slope once steady (from the
end of the first wave). A chat that did not finish is described as the store and the directory
see it (status, phase, step, resident or not), so a stall says where it stopped.

    .venv/bin/python -m bench.soak --minutes 4 --chats 40 --seed 7
    .venv/bin/python -m bench.soak --wave-seed 2795742288 --chats 20   # replay one wave
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
from mozaiks.store import open_store
from tests.chaos.chaos_support import KINDS, ChatDriver, run_schedule, schedule, violations

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


async def _where_it_stopped(rt: Runtime, user: str, driver: ChatDriver) -> str:
    chat_id = driver.session.chat_id
    store = open_store(rt.settings.resolved_store_url)
    try:
        chat = await store.get_chat(APP_ID, user, chat_id)
    finally:
        await store.close()
    try:
        resident = "resident" if await rt.directory().peek(chat_id) is not None else "not resident"
    except Exception as exc:  # the directory is restarting: say so
        resident = f"directory unreachable ({type(exc).__name__})"
    step = (chat.snapshot or {}).get("step", "idle") if chat else "?"
    missing = sorted(set(range(1, max(driver.seqs, default=0) + 1)) - set(driver.seqs))
    return (f"not finished within {WAVE_BOUND_S:.0f} s: client at seq {driver.last_seq} after "
            f"{driver.connections} connections, seqs missing {missing}, repeated "
            f"{len(driver.seqs) - len(set(driver.seqs))}, input request seen {driver.request_id is not None}, "
            f"run end seen {driver.run_completed}, acks {driver.acks}; store: status "
            f"{chat.status if chat else '?'}, phase {chat.phase if chat else '?'}, step {step}, "
            f"last_seq {chat.last_seq if chat else '?'}; {resident}")


async def _wave(rt: Runtime, wave: int, chats: int, seed: int, markers: Path,
                plan: list[tuple[float, str]] | None = None) -> dict[str, Any]:
    user = f"soak-{wave}"
    plan = plan or schedule(seed, rounds=3, span_s=10.0)
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
        broken = {d.session.chat_id: [await _where_it_stopped(rt, user, d)]
                  for d, t in zip(drivers, tasks, strict=True) if t in late}
        broken |= {d.session.chat_id: v for d, t in zip(drivers, tasks, strict=True)
                   if t not in late and (v := await violations(broker, rt.settings.resolved_store_url, APP_ID, user, d))}
    return {"wave": wave, "seed": seed, "seconds": round(took, 1), "kills": [str(k) for k in kills],
            "killed": sum(len(k.targets) for k in kills), "chats": chats, "broken": broken,
            "reconnects": sum(d.connections - 1 for d in drivers)}


async def _sample_memory(start: float, every_s: float, memory: list[tuple[float, float]]) -> None:
    while True:
        await asyncio.sleep(every_s)
        memory.append((round(time.monotonic() - start, 1), round(await asyncio.to_thread(_cluster_pss_mb))))
        print(f"t+{memory[-1][0]:.0f} s: cluster PSS {memory[-1][1]} MB, load {os.getloadavg()[0]:.0f}", flush=True)


async def _soak(rt: Runtime, minutes: float, chats: int, seed: int, wave_seed: int | None,
                sample_s: float, plan: list[tuple[float, str]] | None) -> dict[str, Any]:
    markers = Path(rt.settings.data_dir) / "markers"
    markers.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    start = time.monotonic()
    memory = [(0.0, round(_cluster_pss_mb()))]
    sampler = asyncio.create_task(_sample_memory(start, sample_s, memory))
    waves: list[dict[str, Any]] = []
    steady_from: float | None = None
    try:
        while not waves or (wave_seed is None and time.monotonic() - start < minutes * 60):
            result = await _wave(rt, len(waves), chats, wave_seed or rng.randrange(1 << 32), markers, plan)
            waves.append(result)
            steady_from = steady_from or time.monotonic() - start
            print(f"wave {result['wave']}: {result['seconds']} s, killed {result['killed']}, "
                  f"broken {len(result['broken'])}, PSS {memory[-1][1]:.0f} MB; {'; '.join(result['kills'])}",
                  flush=True)
    finally:
        sampler.cancel()
    memory.append((round(time.monotonic() - start, 1), round(_cluster_pss_mb())))
    steady = [sample for sample in memory if steady_from is not None and sample[0] >= steady_from]
    return {"waves": waves, "memory": memory, "steady_from_s": steady_from,
            "slope_mb_per_min": _slope_mb_per_min(steady)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--chats", type=int, default=200)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--wave-seed", type=int, default=None, help="run one wave with this seed (a replay)")
    parser.add_argument("--sample-s", type=float, default=30.0, help="memory sampling interval")
    parser.add_argument("--plan", default=None,
                        help="with --wave-seed: the kills as at_s:kind,... (e.g. 1.5:sessions,6.9:directory), "
                             "for a wave recorded before the schedule changed")
    args = parser.parse_args()
    plan = [(float(at), kind) for at, kind in (item.split(":") for item in args.plan.split(","))] if args.plan else None
    if plan is not None and (args.wave_seed is None or any(kind not in KINDS for _, kind in plan)):
        parser.error(f"--plan needs --wave-seed and kinds among {', '.join(KINDS)}")
    seed = args.seed if args.seed is not None else random.randrange(1 << 32)
    print(f"soak seed={seed} minutes={args.minutes} chats per wave={args.chats}", flush=True)
    with runtime(num_cpus=4, extra_workflows=[CHAOS_WORKFLOW]) as rt:
        results = asyncio.run(_soak(rt, args.minutes, args.chats, seed, args.wave_seed, args.sample_s, plan))
    waves = results["waves"]
    rows = [[w["wave"], w["seed"], w["chats"], w["seconds"], w["killed"], w["reconnects"], len(w["broken"])]
            for w in waves]
    slope, memory = results["slope_mb_per_min"], results["memory"]
    notes = [f"seed {seed}; chats {sum(w['chats'] for w in waves)}; processes killed {sum(w['killed'] for w in waves)}; "
             f"chats with a broken invariant {sum(len(w['broken']) for w in waves)}",
             f"cluster PSS MB over time (s, MB): {memory}",
             f"memory slope after the first wave: {'n/a' if slope is None else f'{slope:+.1f} MB/min'}",
             f"load average at the end: {os.getloadavg()}"]
    for wave in waves:
        notes += [f"wave {wave['wave']} {chat_id}: {'; '.join(found)}" for chat_id, found in wave["broken"].items()]
    name = "soak" if args.wave_seed is None else f"soak_replay_{args.wave_seed}"
    report(name, "Soak: waves of chats under seeded kills", ["wave", "wave seed", "chats", "s", "killed",
                                                              "reconnects", "broken"], rows,
           {**results, "seed": seed, "load_average_end": os.getloadavg()}, notes)
    if any(wave["broken"] for wave in waves):
        raise SystemExit(1)  # an invariant broke: the soak's target missed


if __name__ == "__main__":
    main()

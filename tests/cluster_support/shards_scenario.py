"""Three directory shards on three raylets: one shard SIGKILLed mid-chat, then a worker node killed.

Thirty chats of the ``slow_turns`` test workflow each say three things, one after the other.
While every chat streams its first reply, one shard's process is SIGKILLed (its pid from the
actor's ``pid`` method); while every chat streams its second, generator node 1 is removed
(its raylet and every process on it, shards included). Prints one JSON document describing what
happened; tests/test_directory_shards.py asserts on it. Run as multinode_scenario is.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from ray.cluster_utils import Cluster
from websockets.exceptions import WebSocketException

from actors.handles import DirectoryHandle
from mozaiks.client import BrokerClient, ChatClosed, ChatConnection, Session
from mozaiks.client.connection import MessageAck
from mozaiks.settings import Settings
from tests.cluster_support.cluster_runtime import runtime_on
from tests.cluster_support.multinode_scenario import (check_log, copy_workflow, scenario_settings, start_cluster,
                                                      user_token)

CHATS = 30
SHARDS = 3
SAYINGS = ("one", "two", "three")
PHASE_DEADLINE_S = 240.0  # one phase of one chat: its message acked and its reply read
PROGRESS_EVERY_S = 10.0


def runtime_settings(workdir: Path) -> Settings:
    copy_workflow(workdir, "slow_turns")
    return scenario_settings(workdir, warm_pool_size=3, directory_shards=SHARDS, session_rate_per_minute=None)


class ChatDriver:
    """One user's chat: say each thing once its phase opens, read until the reply asks for input, and
    reconnect after drops from the last durable seq it saw (counting them per phase)."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.seen: list[int] = []
        self.acks: list[MessageAck] = []
        self.reconnects = [0] * len(SAYINGS)
        self.streaming = [asyncio.Event() for _ in SAYINGS]
        # Seconds from a phase's opening to its ack, its first delta and its reply's end: where a
        # slow scenario spends its time.
        self.took: list[dict[str, float]] = [{} for _ in SAYINGS]
        self.conn: ChatConnection | None = None

    async def run(self, opened: list[asyncio.Event], phase_deadline_s: float) -> None:
        self.conn = await self._connect()
        for phase, text in enumerate(SAYINGS):
            await opened[phase].wait()
            began, took = time.monotonic(), self.took[phase]
            async with asyncio.timeout(phase_deadline_s):
                self.acks.append(await self._say(phase, text))
                took["ack_s"] = round(time.monotonic() - began, 2)
                while True:
                    try:
                        event = await self.conn.next_event(timeout=None)
                    except ChatClosed:
                        await self._reconnect(phase)
                        continue
                    if event["seq"] is not None:
                        self.seen.append(event["seq"])
                    if event["type"] == "chat.text_delta" and not self.streaming[phase].is_set():
                        took["first_delta_s"] = round(time.monotonic() - began, 2)
                        self.streaming[phase].set()
                    if event["type"] == "chat.input_request":  # the reply is done: the user's turn
                        took["reply_s"] = round(time.monotonic() - began, 2)
                        break
        await self.conn.close()

    async def _say(self, phase: int, text: str) -> MessageAck:
        while True:  # the same message id each time: a resend the session already has is a duplicate
            assert self.conn is not None
            try:
                return await self.conn.say(text, message_id=f"{text}-{self.session.chat_id}")
            except (ChatClosed, TimeoutError):
                await self._reconnect(phase)

    async def _connect(self) -> ChatConnection:
        return await ChatConnection.open(self.session.ws_url, self.session.runtime_token,
                                         last_seq=self.seen[-1] if self.seen else 0)

    async def _reconnect(self, phase: int) -> None:
        self.reconnects[phase] += 1
        while True:  # the ingress replica may be moving to another node
            try:
                self.conn = await self._connect()
                return
            except (OSError, TimeoutError, ChatClosed, WebSocketException):
                await asyncio.sleep(0.5)


async def drive(info: Any, cluster: Cluster, nodes: dict[str, Any]) -> dict[str, Any]:
    node_ids = {name: node.node_id for name, node in nodes.items()}
    directory: DirectoryHandle = info.directory
    timings: dict[str, float] = {}
    # Creating a chat starts its session process: ten at a time, which a loaded two-core machine
    # can answer within the client's timeout.
    async with BrokerClient(info.http_url, user_token("shard-user"), timeout_s=120) as broker:
        started = time.monotonic()
        sessions = [s for _ in range(CHATS // 10)
                    for s in await asyncio.gather(*(broker.create_session("slow_turns") for _ in range(10)))]
        timings["create_s"] = time.monotonic() - started
        drivers = [ChatDriver(s) for s in sessions]
        opened = [asyncio.Event() for _ in SAYINGS]
        runs = [asyncio.create_task(d.run(opened, phase_deadline_s=PHASE_DEADLINE_S)) for d in drivers]
        opened[0].set()
        await _phase(drivers, runs, 0)
        timings["all_streaming_s"] = time.monotonic() - started
        before = await directory.stats()
        placement = {"per_node": before.per_node, "shard_nodes": await _shard_nodes(directory),
                     "resident_per_shard": [s.resident for s in before.shards]}

        # One shard's process, SIGKILLed mid-reply: the one with the most chats.
        victim = max(range(SHARDS), key=lambda i: before.shards[i].resident)
        old_pids = await directory.pids()
        killed_at = time.monotonic()
        os.kill(old_pids[victim], signal.SIGKILL)
        async with asyncio.timeout(60):
            while True:  # the restarted shard answers with a new pid
                try:
                    if (await directory.pids())[victim] != old_pids[victim]:
                        break
                except Exception:  # restarting
                    pass
                await asyncio.sleep(0.2)
        back = (await directory.stats()).shards[victim]
        timings["shard_back_s"] = time.monotonic() - killed_at
        shard_kill = {"shard": victim, "resident_before": before.shards[victim].resident,
                      "resident_after": back.resident, "adopted": back.count("adopted"),
                      "crashes_after": back.count("crashes")}

        # Every chat carries on to its second reply; while it streams, generator node 1 dies.
        opened[1].set()
        await _phase(drivers, runs, 1)
        on_gen1 = (await directory.stats()).per_node.get(node_ids["gen1"], 0)
        shards_on_gen1 = [i for i, n in enumerate(await _shard_nodes(directory)) if n == node_ids["gen1"]]
        removed_at = time.monotonic()
        # In a thread: it takes seconds, and the drivers keep reading their sockets meanwhile.
        await asyncio.to_thread(cluster.remove_node, nodes["gen1"], allow_graceful=False)
        opened[2].set()
        await _phase(drivers, runs, 2, until="done")
        timings["node_kill_to_all_complete_s"] = time.monotonic() - removed_at
        chats = []
        for d in drivers:
            checked = await check_log(broker, d)  # type: ignore[arg-type]  # seen and session are what it reads
            checked["reconnects"] = d.reconnects
            checked["replies"] = await _replies(broker, d.session.chat_id)
            chats.append(checked)
        after = await directory.stats()
    return {"nodes": node_ids, "placement": placement, "shard_kill": shard_kill,
            "node_kill": {"sessions_on_gen1": on_gen1, "shards_on_gen1": shards_on_gen1,
                          "per_node_after": after.per_node, "shard_nodes_after": await _shard_nodes(directory)},
            "chats": chats, "timings": {**timings, "phases": [_slowest(drivers, phase) for phase in range(len(SAYINGS))]}}


def _slowest(drivers: list[ChatDriver], phase: int) -> dict[str, Any]:
    """A phase's slowest chat by each measure, and the median: one straggler or all of them slow."""
    summary: dict[str, Any] = {}
    for measure in ("ack_s", "first_delta_s", "reply_s"):
        values = sorted(d.took[phase].get(measure, float("nan")) for d in drivers)
        summary[measure] = {"median": values[len(values) // 2], "max": values[-1]}
    return summary


async def _replies(broker: BrokerClient, chat_id: str) -> list[str]:
    """The start of each of the Writer's replies, as the log holds them."""
    events = (await broker.events(chat_id, limit=1000))["events"]
    return [e["data"]["content"].split(":")[0] for e in events
            if e["type"] == "chat.text" and e["data"].get("role") != "user"]


async def _phase(drivers: list[ChatDriver], runs: list[asyncio.Task[None]], phase: int,
                 until: str = "streaming") -> None:
    """Until every chat streams its reply of ``phase`` (or, ``until="done"``, every driver has
    finished); a driver that failed ends the scenario saying which chats were where. Progress goes
    to stderr every few seconds, so a run that stalls shows where."""
    if until == "done":
        waited = asyncio.ensure_future(asyncio.gather(*runs))
    else:
        waited = asyncio.ensure_future(asyncio.gather(*(d.streaming[phase].wait() for d in drivers)))
    began = time.monotonic()
    while True:
        done, _ = await asyncio.wait([waited, *runs], timeout=PROGRESS_EVERY_S, return_when=asyncio.FIRST_EXCEPTION)
        if waited in done and waited.exception() is None:
            return
        streaming = sum(d.streaming[phase].is_set() for d in drivers)
        finished = sum(run.done() for run in runs)
        print(f"phase {phase} at {time.monotonic() - began:.0f} s: {streaming}/{len(drivers)} streaming, "
              f"{finished} drivers finished", file=sys.stderr, flush=True)
        failed = [repr(run.exception()) for run in runs if run.done() and run.exception() is not None]
        if failed:
            waited.cancel()
            behind = [(d.session.chat_id, d.seen[-3:], d.reconnects, d.took[phase]) for d, run in zip(drivers, runs)
                      if not run.done() or run.exception() is not None]
            raise AssertionError(f"phase {phase}: failed drivers {failed[:3]}; chats behind {behind}")


async def _shard_nodes(directory: DirectoryHandle) -> list[str]:
    nodes: list[str] = await asyncio.gather(*(directory.shard(i).node.remote() for i in range(directory.shards)))
    return nodes


def main(workdir: Path) -> None:
    cluster, nodes = start_cluster()
    with runtime_on(cluster, runtime_settings(workdir)) as info:
        result = asyncio.run(drive(info, cluster, nodes))
    print(json.dumps(result))


if __name__ == "__main__":
    main(Path(sys.argv[1]))

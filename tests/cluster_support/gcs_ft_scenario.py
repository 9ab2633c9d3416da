"""Head-node fault tolerance: the head's GCS process is killed and restarted while chats run.

A two-raylet ``ray.cluster_utils.Cluster`` whose head keeps Ray's control state (GCS) in an
external Redis (``RAY_REDIS_ADDRESS``, Ray's documented GCS fault tolerance), a worker node, and the
runtime on both. Chats of the ``slow_turns`` workflow (three turns each, every reply streamed over
about a second) run while the GCS is down, and the GCS is started again only once every chat has
finished a turn during the outage. Prints one JSON document; tests/test_gcs_fault_tolerance.py
asserts on it.

``python -m tests.cluster_support.gcs_ft_scenario WORKDIR`` with ``RAY_TMPDIR`` private (the test
runs it through tests/cluster_support/runner.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from ray.cluster_utils import Cluster

from mozaiks.client import BrokerClient, ChatConnection, Session
from mozaiks.settings import Settings
from tests.cluster_support.cluster_runtime import runtime_on
from tests.cluster_support.multinode_scenario import copy_workflow, scenario_settings, user_token
from tests.redis_server import redis_server

CHATS = 6
TURNS = 3
def runtime_settings(workdir: Path) -> Settings:
    # No chat may passivate mid-scenario: re-activation creates an actor, which waits for the
    # GCS, and that is not what is measured here (scenario_settings keeps them resident).
    copy_workflow(workdir, "slow_turns")
    return scenario_settings(workdir, warm_pool_size=2)


class Driver:
    """One user's chat: TURNS messages, each sent once the previous reply has finished."""

    def __init__(self, session: Session, outage: asyncio.Event) -> None:
        self.session = session
        self.outage = outage  # set while the GCS is down
        self.seen: list[int] = []
        self.acks: list[str] = []
        self.turns_done = 0
        self.turns_in_outage = 0
        self.first_delta = asyncio.Event()
        self.turn_in_outage = asyncio.Event()

    async def run(self) -> None:
        conn = await ChatConnection.open(self.session.ws_url, self.session.runtime_token)
        for turn in range(TURNS):
            ack = await conn.say(f"turn {turn}", message_id=f"{self.session.chat_id}-{turn}")
            self.acks.append(ack.status)
            began_in_outage = self.outage.is_set()
            while True:
                event = await conn.next_event(timeout=60)
                if event.seq is not None:
                    self.seen.append(event.seq)
                if event.type == "chat.text_delta":
                    self.first_delta.set()
                if event.type == "chat.input_request":
                    break
            self.turns_done += 1
            if began_in_outage and self.outage.is_set():
                self.turns_in_outage += 1
                self.turn_in_outage.set()
        await conn.close()


async def check_log(broker: BrokerClient, driver: Driver) -> dict[str, Any]:
    events = (await broker.events(driver.session.chat_id, limit=1000))["events"]
    seqs = [e["seq"] for e in events]
    return {"chat_id": driver.session.chat_id, "acks": driver.acks, "turns_done": driver.turns_done,
            "turns_in_outage": driver.turns_in_outage,
            "log_contiguous": seqs == list(range(1, len(seqs) + 1)), "client_saw_log": driver.seen == seqs,
            "user_texts": [e["data"]["content"] for e in events
                           if e["type"] == "chat.text" and e["data"].get("role") == "user"],
            "assistant_texts": sum(1 for e in events
                                   if e["type"] == "chat.text" and e["data"].get("role") == "assistant")}


async def drive(info: Any, cluster: Cluster, worker_id: str) -> dict[str, Any]:
    timings: dict[str, float] = {}
    outage = asyncio.Event()
    async with BrokerClient(info.http_url, user_token("gcs-ft-user")) as broker:
        sessions = await asyncio.gather(*(broker.create_session("slow_turns") for _ in range(CHATS)))
        placement = (await info.directory.stats()).per_node
        drivers = [Driver(s, outage) for s in sessions]
        runs = asyncio.gather(*(d.run() for d in drivers))
        async with asyncio.timeout(60):
            await asyncio.gather(*(d.first_delta.wait() for d in drivers))

        killed = time.monotonic()
        cluster.head_node.kill_gcs_server()
        outage.set()
        timings["kill_gcs_s"] = time.monotonic() - killed
        # The GCS stays down until every chat has begun and finished a whole turn without it.
        try:
            async with asyncio.timeout(40):
                await asyncio.gather(*(d.turn_in_outage.wait() for d in drivers))
        finally:
            outage.clear()
            timings["outage_s"] = time.monotonic() - killed
            restarted = time.monotonic()
            cluster.head_node.start_gcs_server()
            timings["start_gcs_s"] = time.monotonic() - restarted

        async with asyncio.timeout(90):
            await runs
        timings["kill_to_all_complete_s"] = time.monotonic() - killed
        chats = [await check_log(broker, d) for d in drivers]

        # After the restart the GCS creates actors again: a new chat starts and answers.
        started = time.monotonic()
        fresh = Driver(await broker.create_session("slow_turns"), asyncio.Event())
        async with asyncio.timeout(60):
            await fresh.run()
        timings["new_chat_after_restart_s"] = time.monotonic() - started
        fresh_chat = await check_log(broker, fresh)
    return {"worker_node": worker_id, "sessions_per_node": placement, "chats": chats, "fresh_chat": fresh_chat,
            "timings": timings}


def main(workdir: Path) -> None:
    with redis_server() as redis:
        # Ray's documented switch (docs.ray.io, "GCS Fault Tolerance"): the head's GCS keeps its
        # tables in this Redis, so a restarted GCS loads them back instead of starting empty.
        os.environ["RAY_REDIS_ADDRESS"] = redis.address
        started = time.monotonic()
        cluster = Cluster(initialize_head=True, head_node_args={
            "num_cpus": 2, "include_dashboard": False, "redis_password": redis.password, "redis_username": "default"})
        worker = cluster.add_node(num_cpus=2)
        cluster.wait_for_nodes()
        cluster_start_s = time.monotonic() - started
        with runtime_on(cluster, runtime_settings(workdir)) as info:
            result = asyncio.run(drive(info, cluster, worker.node_id))
        result["timings"]["cluster_start_s"] = cluster_start_s
    print(json.dumps(result))


if __name__ == "__main__":
    main(Path(sys.argv[1]))

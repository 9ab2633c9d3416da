"""The runtime's metrics, as Prometheus sees them: scraped over HTTP from Ray's metrics export port
after real chats (docs/operations.md)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from mozaiks import metrics
from mozaiks.store import open_store
from tests.conftest import APP_ID, auth_header
from tests.fake_openai import FakeOpenAI, FakeResponse, FakeUsage
from tests.helpers import collect_until
from tests.test_hello_chat import run_hello

Sample = tuple[str, dict[str, str], float]
DASHBOARD = Path(__file__).resolve().parents[1] / "deploy" / "grafana" / "mozaiks.json"
SCRAPE_DEADLINE_S = 90.0  # Ray's agents report every few seconds; a loaded machine is slower


def scrape(port: int) -> list[Sample]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return [(s.name, dict(s.labels), s.value) for family in text_string_to_metric_families(text)
            for s in family.samples]


def matching(samples: list[Sample], name: str, **labels: str) -> list[Sample]:
    return [s for s in samples if s[0] == name and all(s[1].get(k) == v for k, v in labels.items())]


async def scrape_until(port: int, wanted: dict[str, dict[str, str]]) -> list[Sample]:
    """Scrape until every wanted series (name -> labels it must carry) has a non-zero value, as a
    Prometheus server polling the endpoint would; Ray exports with a delay."""
    deadline = time.monotonic() + SCRAPE_DEADLINE_S
    while True:
        samples = await asyncio.to_thread(scrape, port)
        missing = [name for name, labels in wanted.items()
                   if not any(value > 0 for _, _, value in matching(samples, name, **labels))]
        if not missing:
            return samples
        assert time.monotonic() < deadline, f"not exported within {SCRAPE_DEADLINE_S} s: {missing}"
        await asyncio.sleep(1.0)


async def test_a_chat_shows_up_in_what_ray_exports_for_prometheus(runtime, broker_for, http, settings,
                                                                   workflows_dir: Path, fake_model: FakeOpenAI) -> None:
    # A scripted chat with a tool call and a handoff, and a chat on an OpenAI-protocol model.
    broker = broker_for("metrics-user")
    session = await broker.create_session("hello")
    async with await broker.connect(session, last_seq=None) as conn:
        await run_hello(conn)
    folder = workflows_dir / "metrics_lab"
    folder.mkdir()
    (folder / "orchestrator.json").write_text(json.dumps({"name": "metrics_lab", "startup_mode": "UserDriven",
                                                                 "human_in_the_loop": False}))
    (folder / "agents.json").write_text(json.dumps({"agents": [
        {"name": "Counter", "system_message": "Be brief.",
         "model": {"provider": "openai", "name": "fake-model", "base_url": fake_model.base_url}}]}))
    fake_model.enqueue(FakeResponse(text="Counted, in three chunks.", usage=FakeUsage(prompt_tokens=31,
                                                                                     completion_tokens=7)))
    session = await broker.create_session("metrics_lab")
    async with await broker.connect(session, last_seq=0) as conn:
        await conn.say("count")
        await collect_until(conn, "chat.run_complete", timeout=60)
    # A session that dies (a chat of its own: a dead process's series leave the export with it)
    # is counted, and the directory re-activates the chat from its log.
    doomed = await broker.create_session("hello")
    async with await broker.connect(doomed, last_seq=None) as conn:
        await collect_until(conn, "chat.input_request")
    crashed = await runtime.directory.peek(doomed.chat_id)
    assert crashed is not None
    os.kill(await crashed.pid(), signal.SIGKILL)
    # A session fenced out by a newer owner: the store refuses its write, the chat carries on.
    fenced = await broker.create_session("hello")
    store = open_store(settings.resolved_store_url)
    await store.claim(APP_ID, "metrics-user", fenced.chat_id)
    await store.close()
    async with await broker.connect(fenced, last_seq=None) as conn:
        request = await collect_until(conn, "chat.input_request")
        assert (await conn.say("ada", input_request_id=request[-1]["data"]["request_id"]))["status"] == "accepted"
    refused = await http.post("/api/mozaiks/sessions", json={"workflow_name": "gated_admin"},
                              headers=auth_header("metrics-user"))
    assert refused.status_code == 403

    hello = {"app_id": APP_ID, "workflow": "hello"}
    lab = {"app_id": APP_ID, "workflow": "metrics_lab", "model": "fake-model"}
    samples = await scrape_until(settings.metrics_export_port, {
        "ray_mozaiks_activations_total": {"app_id": APP_ID},
        "ray_mozaiks_passivations_total": {"app_id": APP_ID},  # after the idle timeout
        "ray_mozaiks_session_crashes_total": {"app_id": APP_ID},
        "ray_mozaiks_crash_reactivations_total": {"app_id": APP_ID},
        "ray_mozaiks_fencing_refusals_total": {"app_id": APP_ID},
        "ray_mozaiks_warm_pool_size": {},
        "ray_mozaiks_runs_total": {**hello, "status": "completed"},
        "ray_mozaiks_turns_total": {**hello, "agent": "Greeter", "status": "ok"},
        "ray_mozaiks_turn_seconds_count": {**hello, "agent": "Farewell"},
        "ray_mozaiks_tool_calls_total": {**hello, "tool": "make_greeting", "status": "ok"},
        "ray_mozaiks_tool_call_seconds_count": {**hello, "tool": "make_greeting"},
        "ray_mozaiks_model_calls_total": {**lab, "agent": "Counter", "status": "ok"},
        "ray_mozaiks_model_call_seconds_count": lab,
        "ray_mozaiks_model_ttft_seconds_count": lab,
        "ray_mozaiks_model_tokens_total": {**lab, "agent": "Counter", "kind": "completion"},
        "ray_mozaiks_store_commit_seconds_count": {"status": "ok"},
        "ray_mozaiks_ws_messages_total": {"direction": "out"},
        "ray_mozaiks_ws_closes_total": {"by": "client"},
        "ray_mozaiks_http_requests_total": {"route": "/api/mozaiks/sessions", "method": "POST",
                                            "status_code": "201"},
        "ray_mozaiks_gate_refusals_total": {"reason": "not_entitled"},
    })
    # Set for every node that ever held a session, zero once its chats passivated.
    assert matching(samples, "ray_mozaiks_sessions_resident")
    prompt = matching(samples, "ray_mozaiks_model_tokens_total", **lab, kind="prompt")
    assert sum(value for *_, value in prompt) >= 31
    # Route templates, never raw paths: a chat id must not become a label value.
    routes = {labels["route"] for _, labels, _ in matching(samples, "ray_mozaiks_http_requests_total")}
    assert not any(session.chat_id in route for route in routes)


def test_the_grafana_dashboard_uses_only_metrics_the_runtime_exports() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    exprs += [dashboard["templating"]["list"][1]["query"]["query"]]
    referenced = {name for expr in exprs for name in re.findall(r"\bray_[a-z_]+", expr)}
    exported = {name for metric in metrics.DEFINED.values() for name in metric.exported()}
    assert referenced and referenced <= exported, referenced - exported
    # Built from all of them: every metric of the runtime has a panel.
    unused = [m.name for m in metrics.DEFINED.values() if not set(m.exported()) & referenced]
    assert not unused

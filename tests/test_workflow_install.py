"""Installing a workflow at runtime (PUT /api/runtime/workflows/{name}) on the real runtime: only
the service credential may, a broken workflow changes nothing, an installed one starts at once
(its tools' code included), gated by default and visible to the installing app only."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest
import ray

from actors.tool_tasks import ToolOutcome, _run_tool
from mozaiks.client import BrokerClient
from mozaiks.client.http import BrokerError
from mozaiks.settings import Settings
from tests.conftest import APP_ID, auth_header
from tests.helpers import collect_until, of_type
from workflows.installed import installed_root, version_of
from workflows.tool_context import ToolContext


def tool_workflow(name: str, tool_source: str | None = None) -> dict[str, str]:
    """Two scripted agents; the first calls a tool whose code exists only in this install."""
    source = tool_source or ("def stamp(word: str, ctx) -> dict:\n"
                             "    ctx.set_context('stamped', word.upper() + '-from-installed-code')\n"
                             "    return {'stamped': word.upper() + '-from-installed-code'}\n")
    files: dict[str, Any] = {
        "orchestrator.json": {"name": name, "startup_mode": "AgentDriven", "initial_agent": "Caller", "max_turns": 6},
        "agents.json": {"agents": [
            {"name": "Caller", "system_message": "Call stamp.", "tools": ["stamp"], "model": {
                "provider": "scripted", "script": [
                    {"tool_calls": [{"name": "stamp", "arguments": {"word": "hello"}}]},
                    {"text": "stamp said {context.stamped}"}]}},
            {"name": "Closer", "system_message": "Close.", "model": {
                "provider": "scripted", "script": [{"text": "done"}]}},
        ]},
        "handoffs.json": {"handoff_rules": [
            {"source_agent": "Caller", "target_agent": "Closer", "handoff_type": "after_work"},
            {"source_agent": "Closer", "target_agent": "terminate", "handoff_type": "after_work"}]},
        "tools.json": {"tools": [{"name": "stamp", "description": "Stamp a word", "file": "stamp.py",
                                  "agents": ["Caller"]}]},
        "context_variables.json": {"definitions": [
            {"name": "stamped", "default": None, "source": {"type": "state"}}]},
    }
    return {**{path: json.dumps(content) for path, content in files.items()}, "tools/stamp.py": source}


@pytest.fixture
def service(settings: Settings) -> dict[str, str]:
    assert settings.service_credential is not None
    return {"Authorization": f"Bearer {settings.service_credential.get_secret_value()}"}


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


async def install(http: httpx.AsyncClient, headers: dict[str, str], name: str, files: dict[str, str],
                  app_id: str = APP_ID, **extra: Any) -> httpx.Response:
    return await http.put(f"/api/runtime/workflows/{name}", headers=headers,
                          json={"app_id": app_id, "files": files, **extra})


async def run_to_completion(broker: BrokerClient, name: str) -> list[dict[str, Any]]:
    session = await broker.create_session(name)
    async with await broker.connect(session) as conn:
        events = await collect_until(conn, "chat.run_complete")
    assert events[-1]["data"]["status"] == "completed"
    return events


async def test_an_installed_workflow_starts_at_once_and_runs_its_own_tool_code(http, service, broker_for):
    name = unique("installed")
    created = await install(http, service, name, tool_workflow(name))
    assert created.status_code == 201, created.text
    body = created.json()
    assert (body["name"], body["app_id"], body["capability"], body["installed_by"]) == (
        name, APP_ID, {"gated": True}, "service")
    assert body["files"] == sorted(tool_workflow(name))

    events = await run_to_completion(broker_for("ivy", plan="pro"), name)
    [response] = of_type(events, "chat.tool_response")
    assert response["data"]["status"] == "ok"
    assert response["data"]["result"] == {"stamped": "HELLO-from-installed-code"}
    texts = [(e["agent"], e["data"]["content"]) for e in of_type(events, "chat.text")]
    assert texts == [("Caller", "stamp said HELLO-from-installed-code"), ("Closer", "done")]

    again = await install(http, service, name, tool_workflow(name))
    assert again.status_code == 200 and again.json()["version"] == body["version"]  # same files, same version
    shown = (await http.get(f"/api/runtime/workflows/{name}", headers=service, params={"app_id": APP_ID})).json()
    assert shown["files"] == tool_workflow(name)


async def test_gated_by_default_and_the_install_may_set_its_capability(http, service, broker_for):
    gated, public = unique("gated_install"), unique("public_install")
    assert (await install(http, service, gated, tool_workflow(gated))).status_code == 201
    assert (await install(http, service, public, tool_workflow(public),
                          capability={"gated": False, "display_name": "Open to all"})).status_code == 201
    no_plan = broker_for("nolan")
    with pytest.raises(BrokerError) as refused:
        await no_plan.create_session(gated)
    assert (refused.value.status, refused.value.code) == (403, "not_entitled")
    listed = {w["name"]: w for w in await no_plan.list_workflows()}
    assert gated not in listed and listed[public]["display_name"] == "Open to all"
    assert gated in {w["name"] for w in await broker_for("paula", plan="pro").list_workflows()}
    await run_to_completion(no_plan, public)


async def test_a_broken_install_is_refused_with_the_loaders_error_and_changes_nothing(http, service, broker_for):
    name = unique("broken")
    files = tool_workflow(name)
    files["handoffs.json"] = json.dumps({"handoff_rules": [
        {"source_agent": "Caller", "target_agent": "Nobody", "handoff_type": "after_work"}]})
    refused = await install(http, service, name, files)
    assert refused.status_code == 422
    error = refused.json()["error"]
    assert error["code"] == "invalid_workflow"
    assert error["message"].startswith(f"{name}/handoffs.json: handoff_rules[0].target_agent: ")
    assert error["details"]["issues"][0] == error["message"]

    assert (await http.get(f"/api/runtime/workflows/{name}", headers=service,
                           params={"app_id": APP_ID})).status_code == 404
    broker = broker_for("bob", plan="pro")
    with pytest.raises(BrokerError) as missing:
        await broker.create_session(name)
    assert (missing.value.status, missing.value.code) == (404, "unknown_workflow")
    assert name not in {w["name"] for w in await broker.list_workflows()}

    # Over a good install, a broken one leaves the good one in place, whole.
    good = tool_workflow(name)
    version = (await install(http, service, name, good)).json()["version"]
    files = {**good, "tools/stamp.py": "def stamp(word: str) -> dict:\n    return {\n"}  # a syntax error
    refused = await install(http, service, name, files)
    assert refused.status_code == 422
    assert refused.json()["error"]["message"].startswith(f"{name}/tools.json: tools[0].file: tools/stamp.py: syntax error")
    shown = (await http.get(f"/api/runtime/workflows/{name}", headers=service, params={"app_id": APP_ID})).json()
    assert (shown["version"], shown["files"]) == (version, good)
    await run_to_completion(broker, name)


@pytest.mark.parametrize(("path", "problem"), [
    ("../escape.json", "path parts may not be empty or start with '.'"),
    ("/etc/passwd", "not a relative POSIX path"),
    ("tools\\win.py", "not a relative POSIX path"),
])
async def test_file_paths_outside_the_folder_are_refused(http, service, path, problem):
    name = unique("paths")
    refused = await install(http, service, name, {**tool_workflow(name), path: "x"})
    assert refused.status_code == 422
    assert refused.json()["error"]["message"] == f"{name}/{path}: $: {problem}"


async def test_names_of_deployed_workflows_and_generators_cannot_be_installed(http, service):
    for name in ("hello", "workflow_generator"):
        refused = await install(http, service, name, tool_workflow(name))
        assert (refused.status_code, refused.json()["error"]["code"]) == (409, "workflow_exists")


async def test_only_the_service_credential_installs(http, service, broker_for):
    name = unique("sneaky")
    session = await broker_for("mallory").create_session("hello")
    for headers in (auth_header("mallory", plan="pro"), {"Authorization": f"Bearer {session.runtime_token}"}, {}):
        refused = await install(http, headers, name, tool_workflow(name))
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "unauthenticated"
        for method in ("GET", "DELETE"):
            other = await http.request(method, f"/api/runtime/workflows/{name}", headers=headers,
                                       params={"app_id": APP_ID})
            assert other.status_code == 401 and other.json()["error"]["code"] == "unauthenticated"
    assert (await http.get(f"/api/runtime/workflows/{name}", headers=service,
                           params={"app_id": APP_ID})).status_code == 404


async def test_an_install_belongs_to_its_app(http, service, broker_for):
    name = unique("app_scoped")
    assert (await install(http, service, name, tool_workflow(name), capability={"gated": False})).status_code == 201
    other = broker_for("olga", app_id="other-app", plan="pro")
    with pytest.raises(BrokerError) as missing:
        await other.create_session(name)
    assert (missing.value.status, missing.value.code) == (404, "unknown_workflow")
    assert name not in {w["name"] for w in await other.list_workflows()}
    assert (await http.get(f"/api/runtime/workflows/{name}", headers=service,
                           params={"app_id": "other-app"})).status_code == 404
    standalone = await http.post("/api/runtime/sessions", headers=service,
                                 json={"app_id": "other-app", "user_id": "olga", "workflow_name": name})
    assert (standalone.status_code, standalone.json()["error"]["code"]) == (404, "unknown_workflow")
    await run_to_completion(broker_for("otto"), name)  # and in its own app it runs, from the broker
    ours = await http.post("/api/runtime/sessions", headers=service,
                           json={"app_id": APP_ID, "user_id": "otto", "workflow_name": name})
    assert (ours.status_code, ours.json()["status"]) == (201, "created")  # and from a host's Standalone call


async def test_uninstalled_workflows_no_longer_start(http, service, broker_for):
    name = unique("removed")
    assert (await install(http, service, name, tool_workflow(name), capability={"gated": False})).status_code == 201
    gone = await http.delete(f"/api/runtime/workflows/{name}", headers=service, params={"app_id": APP_ID})
    assert gone.json() == {"app_id": APP_ID, "name": name, "deleted": True}
    with pytest.raises(BrokerError) as missing:
        await broker_for("dora").create_session(name)
    assert missing.value.code == "unknown_workflow"
    again = await http.delete(f"/api/runtime/workflows/{name}", headers=service, params={"app_id": APP_ID})
    assert (again.status_code, again.json()["error"]["code"]) == (404, "unknown_workflow")


async def test_a_workflow_that_is_not_a_generator_cannot_install_from_its_tools(http, service, broker_for):
    """Installed code (here: an installed workflow's tool) calling ctx.install_workflow is refused."""
    name, target = unique("wannabe"), unique("planted")
    source = ("def stamp(word: str, ctx) -> dict:\n"
              f"    return ctx.install_workflow({target!r}, {{'orchestrator.json': '{{}}'}})\n")
    assert (await install(http, service, name, tool_workflow(name, source),
                          capability={"gated": False})).status_code == 201
    session = await broker_for("eve").create_session(name)
    async with await broker_for("eve").connect(session) as conn:
        response = await conn.wait_for("chat.tool_response")
    assert response["data"]["status"] == "error"
    assert "InstallRefused: forbidden: Workflow" in response["data"]["error"]
    assert (await http.get(f"/api/runtime/workflows/{target}", headers=service,
                           params={"app_id": APP_ID})).status_code == 404


async def test_a_tool_task_on_a_node_without_the_folder_writes_it_from_the_shipped_files(runtime, tmp_path):
    """A session ships an installed workflow's files with its tool tasks; a task whose node has no
    folder for that version (here: a path that exists nowhere) writes one and runs the tool from it."""
    name = unique("shipped")
    files = tool_workflow(name)
    ctx = ToolContext(chat_id="c", app_id=APP_ID, user_id="u", workflow_name=name)
    raw = await _run_tool.remote(str(tmp_path / "elsewhere" / name), "stamp.py", "stamp", {"word": "far"}, ctx,
                                 None, "call-1", "stamp", [ray.put(files)])
    outcome = ToolOutcome.model_validate(raw)
    assert (outcome.status, outcome.result) == ("ok", {"stamped": "FAR-from-installed-code"})
    assert (installed_root() / version_of(name, files) / name / "tools" / "stamp.py").read_text() == files["tools/stamp.py"]


async def test_an_installed_workflows_component_is_served_to_its_chats_token(http, service, broker_for):
    name = unique("with_component")
    files = {**tool_workflow(name), "components/Stamp.js": "export default function Stamp() { return null; }\n"}
    assert (await install(http, service, name, files, capability={"gated": False})).status_code == 201
    session = await broker_for("cora").create_session(name)
    path = f"/api/mozaiks/workflows/{name}/components/Stamp.js"
    served = await http.get(path, headers={"Authorization": f"Bearer {session.runtime_token}"})
    assert (served.status_code, served.text) == (200, files["components/Stamp.js"])
    other = await broker_for("cora").create_session("hello")  # a token of another workflow learns nothing
    refused = await http.get(path, headers={"Authorization": f"Bearer {other.runtime_token}"})
    assert refused.status_code == 404

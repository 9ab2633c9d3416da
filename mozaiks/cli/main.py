from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="mozaiks: multi-agent chat workflows on Ray", no_args_is_help=True)
console = Console(stderr=True)


@app.command()
def run(address: Annotated[str | None, typer.Option(help="Join a running Ray cluster ('auto' for `ray start`)")] = None,
        port: Annotated[int | None, typer.Option(help="HTTP/WebSocket port (default from MOZAIKS_PORT or 8000)")] = None) -> None:
    """Start the runtime in the foreground until Ctrl-C."""
    if address:
        _send_ray_token_if_present()
    from serve_app.launch import ClusterJoinError, start_runtime, stop_runtime
    from mozaiks.settings import load_settings

    settings = load_settings()
    if port is not None:
        settings = settings.model_copy(update={"port": port})
    console.print(f"[bold]mozaiks[/bold] starting ({settings.mode} mode, store {settings.resolved_store_url})")
    # SIGTERM (systemd, docker stop, Kubernetes) takes the same clean path as Ctrl-C, also while
    # starting; a second signal of either kind stops at once.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        try:
            info = start_runtime(settings, address=address)
        except ClusterJoinError as exc:
            console.print(f"[red]{exc}[/red]", soft_wrap=True)
            raise typer.Exit(1) from None
        signal.signal(signal.SIGTERM, _interrupt)  # ray.init installs handlers of its own
        console.print(f"[green]listening[/green] on {info.http_url}  (WebSocket {info.ws_url}/ws/…)")
        console.print(f"workflows from {settings.workflows_dir}")
        if settings.mode == "local":
            console.print(f"[bold]open the chat:[/bold]  {info.http_url}/chat/")
            console.print("get a user token:  mozaiks dev-token --user alice")
        console.print("Ctrl-C to stop")
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, _stop_now)
        signal.signal(signal.SIGTERM, _stop_now)
        console.print("stopping…")
        stop_runtime()


def _send_ray_token_if_present() -> None:
    """A `ray start` head on a machine that holds ~/.ray/auth_token requires that token, but a
    driver sends it only in token mode, which Ray reads from the environment when it is imported."""
    if "RAY_AUTH_MODE" in os.environ:
        return
    if os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH") \
            or (Path.home() / ".ray" / "auth_token").is_file():
        os.environ["RAY_AUTH_MODE"] = "token"


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def _stop_now(*_: object) -> None:
    from serve_app.launch import kill_private_ray

    kill_private_ray()
    os._exit(130)


@app.command("dev-token")
def dev_token_cmd(user: Annotated[str, typer.Option(help="user id (the `sub` claim)")] = "alice",
                  app_id: Annotated[str | None, typer.Option("--app", help="app id claim")] = None,
                  plan: Annotated[str | None, typer.Option(help="plan claim, for gated capabilities")] = None,
                  role: Annotated[list[str] | None, typer.Option(help="a role claim (repeatable)")] = None,
                  ttl: Annotated[int, typer.Option(help="lifetime in seconds")] = 3600) -> None:
    """Print a user JWT signed with this machine's local development secret (local mode only)."""
    from broker.keys import dev_token
    from mozaiks.settings import load_settings

    try:
        print(dev_token(load_settings(), user, app_id=app_id, plan=plan, roles=role or None, ttl_s=ttl))
    except Exception as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None


@app.command()
def validate(
    folder: Annotated[Path, typer.Argument(help="a workflows directory, or one workflow folder")],
    strict: Annotated[bool, typer.Option("--strict", help="refuse workflows that load with warnings")] = False,
) -> None:
    """Load every workflow with the runtime's own loader; report each folder, ok or its problems."""
    from workflows.loader import WorkflowError, load_workflow

    folder = folder.resolve()
    if not folder.is_dir():
        console.print(f"[red]{folder}: not a directory[/red]")
        raise typer.Exit(1)
    single = any(folder.glob("orchestrator.*"))
    folders = [folder] if single else sorted(
        p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))
    refused = 0
    for path in folders:
        try:
            workflow = load_workflow(path)
        except WorkflowError as exc:
            refused += 1
            console.print(f"[red]refused[/red] {path.name}", soft_wrap=True)
            for issue in exc.issues:
                console.print(f"  {issue}", markup=False, highlight=False, soft_wrap=True)
            continue
        if strict and workflow.warnings:
            refused += 1
            console.print(f"[red]refused[/red] {path.name} (--strict: warnings are errors)")
        else:
            console.print(f"[green]ok[/green] {workflow.name}: {len(workflow.agents)} agents, "
                          f"{len(workflow.tools)} tools")
        for warning in workflow.warnings:
            console.print(f"  warning: {warning}", markup=False, highlight=False, soft_wrap=True)
    if not folders:
        console.print(f"[red]{folder}: no workflow folders[/red]")
        raise typer.Exit(1)
    if refused:
        console.print(f"{refused} of {len(folders)} refused")
        raise typer.Exit(1)


Url = Annotated[str | None, typer.Option(envvar="MOZAIKS_URL", help="the runtime's HTTP address "
                                          "(default http://127.0.0.1:MOZAIKS_PORT)")]
Token = Annotated[str | None, typer.Option(envvar="MOZAIKS_TOKEN", help="a user JWT (default in local "
                                           "mode: a development token for --user)")]
User = Annotated[str, typer.Option(help="user for the local development token")]
Json = Annotated[bool, typer.Option("--json", help="machine-readable output")]


def _broker(url: str | None, token: str | None, user: str) -> Any:
    from broker.keys import dev_token
    from mozaiks.client import BrokerClient
    from mozaiks.settings import load_settings

    settings = load_settings()
    if token is None:
        if settings.mode != "local":
            console.print("[red]no token: pass --token or set MOZAIKS_TOKEN[/red]")
            raise typer.Exit(2)
        token = dev_token(settings, user)
    return BrokerClient(url or f"http://127.0.0.1:{settings.port}", token)


def _call(url: str | None, token: str | None, user: str, work: Callable[[Any], Awaitable[Any]]) -> Any:
    from mozaiks.client import BrokerError

    async def go() -> Any:
        async with _broker(url, token, user) as broker:
            return await work(broker)

    try:
        return asyncio.run(go())
    except BrokerError as exc:
        console.print(f"[red]{exc}[/red]", highlight=False)
        raise typer.Exit(1) from None
    except OSError as exc:
        console.print(f"[red]cannot reach the runtime: {exc}[/red]", highlight=False)
        raise typer.Exit(1) from None


@app.command()
def chat(workflow: Annotated[str, typer.Argument(help="workflow name")],
         resume: Annotated[str | None, typer.Option(help="continue this chat id")] = None,
         url: Url = None, token: Token = None, user: User = "alice", as_json: Json = False) -> None:
    """Chat with a workflow in the terminal (Ctrl-C cancels the run, a second Ctrl-C quits)."""
    from mozaiks.cli.terminal import TerminalChat

    status = _call(url, token, user, lambda broker: TerminalChat(broker, Console(), as_json).run(workflow, resume))
    raise typer.Exit(0 if status in ("completed", "cancelled") else 1)


@app.command()
def sessions(url: Url = None, token: Token = None, user: User = "alice", as_json: Json = False,
             limit: Annotated[int, typer.Option(min=1, max=100)] = 20) -> None:
    """List your chats, newest first."""
    listed = _call(url, token, user, lambda broker: broker.list_sessions(limit))
    if as_json:
        print(json.dumps(listed))
        return
    table = Table("chat_id", "workflow", "status", "updated")
    for row in listed["sessions"]:
        table.add_row(row["chat_id"], row.get("workflow_name", ""), row.get("status", ""),
                      str(row.get("updated_at", "")))
    Console().print(table)


@app.command()
def events(chat_id: str, url: Url = None, token: Token = None, user: User = "alice", as_json: Json = False,
           after_seq: Annotated[int, typer.Option(min=0)] = 0,
           follow: Annotated[bool, typer.Option("--follow", help="keep printing new events")] = False) -> None:
    """Print a chat's durable events (with --follow, until Ctrl-C)."""

    async def work(broker: Any) -> None:
        seq = after_seq
        while True:
            page = await broker.events(chat_id, after_seq=seq)
            for event in page["events"]:
                seq = max(seq, event["seq"])
                print(json.dumps(event) if as_json else
                      f"{event['seq']:>5} {event['type']:<22} {json.dumps(event.get('data'))[:160]}", flush=True)
            if not follow:
                return
            if not page["events"]:
                await asyncio.sleep(1.0)

    try:
        _call(url, token, user, work)
    except KeyboardInterrupt:
        pass


@app.command()
def cancel(chat_id: str, url: Url = None, token: Token = None, user: User = "alice", as_json: Json = False,
           mode: Annotated[str, typer.Option(help="immediate | after_turn")] = "immediate") -> None:
    """Cancel a chat's running turn."""
    result = _call(url, token, user, lambda broker: broker.cancel(chat_id, mode))
    print(json.dumps(result) if as_json else f"cancel {chat_id}: {result}")


@app.command()
def status(address: Annotated[str | None, typer.Option(help="the Ray cluster's address (default: the private "
                                                             "Ray of `mozaiks run` on this machine, else 'auto')")] = None,
           as_json: Json = False) -> None:
    """The runtime on its Ray cluster: the Serve application, resident sessions, warm pool, nodes."""
    _send_ray_token_if_present()  # before Ray is imported
    from mozaiks.settings import load_settings
    from serve_app.launch import APP_NAME, ClusterJoinError, join_cluster
    from serve_app.status import NoRuntime, read_address, runtime_status

    address = address or read_address(load_settings().data_dir) or "auto"
    try:
        join_cluster(address)
        report = runtime_status(APP_NAME)
    except (ClusterJoinError, NoRuntime) as exc:
        console.print(f"[red]{exc}[/red]", soft_wrap=True)
        raise typer.Exit(1) from None
    if as_json:
        print(report.model_dump_json())
        return
    out = Console()
    app_state = report.application
    out.print(f"application [bold]{APP_NAME}[/bold]: {app_state.status if app_state else 'not deployed'}"
              + (f" ({app_state.message})" if app_state and app_state.message else ""))
    for name, deployment in (app_state.deployments if app_state else {}).items():
        replicas = ", ".join(f"{n} {state.lower()}" for state, n in deployment.replicas.items())
        out.print(f"  {name}: {deployment.status} ({replicas or 'no replicas'})")
    out.print(f"sessions: {report.resident} resident (at most {report.max_resident_sessions} a node), warm pool "
              f"{report.pool} of {report.warm_pool_size}, idle timeout {report.idle_timeout_s:g} s")
    table = Table("node", "address", "alive", "CPUs", "resident", "pool")
    for node in report.nodes:
        table.add_row(node.node_id[:12], node.address, "yes" if node.alive else "no", f"{node.cpus:g}",
                      str(node.resident), str(node.pool))
    out.print(table)


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())

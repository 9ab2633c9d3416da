from __future__ import annotations

import signal
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

app = typer.Typer(help="mozaiks: multi-agent chat workflows on Ray", no_args_is_help=True)
console = Console(stderr=True)


@app.command()
def run(address: Annotated[str | None, typer.Option(help="Join a running Ray cluster ('auto' for `ray start`)")] = None,
        port: Annotated[int | None, typer.Option(help="HTTP/WebSocket port (default from MOZAIKS_PORT or 8000)")] = None) -> None:
    """Start the runtime in the foreground until Ctrl-C."""
    from serve_app.launch import start_runtime, stop_runtime
    from mozaiks.settings import load_settings

    settings = load_settings()
    if port is not None:
        settings = settings.model_copy(update={"port": port})
    console.print(f"[bold]mozaiks[/bold] starting ({settings.mode} mode, store {settings.resolved_store_url})")
    info = start_runtime(settings, address=address)
    console.print(f"[green]listening[/green] on {info.http_url}  (WebSocket {info.ws_url}/ws/…)")
    console.print(f"workflows from {settings.workflows_dir}")
    if settings.mode == "local":
        console.print(f"[bold]open the chat:[/bold]  {info.http_url}/chat/")
        console.print("get a user token:  mozaiks dev-token --user alice")
    console.print("Ctrl-C to stop")
    stopping = False

    def _stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    try:
        while not stopping:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    console.print("stopping…")
    stop_runtime()


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
def validate(folder: Annotated[Path, typer.Argument(help="a workflows directory, or one workflow folder")]) -> None:
    """Load workflows with the runtime's own loader and report the first error per folder."""
    from workflows.loader import WorkflowError, load_workflow, load_workflows

    try:
        found = [load_workflow(folder)] if any(folder.glob("orchestrator.*")) else list(load_workflows(folder).values())
    except WorkflowError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    for workflow in found:
        console.print(f"[green]ok[/green] {workflow.name}: {len(workflow.agents)} agents, {len(workflow.tools)} tools")


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())

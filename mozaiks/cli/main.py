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


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())

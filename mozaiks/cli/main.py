from __future__ import annotations

import os
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


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())

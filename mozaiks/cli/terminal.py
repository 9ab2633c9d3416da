"""A chat in the terminal: the broker makes the session, the WebSocket streams it (PROTOCOL §2, §4)."""

from __future__ import annotations

import asyncio
import json
import signal
from typing import Any

from rich.console import Console

from mozaiks.client import BrokerClient, ChatClosed, ChatConnection, ChatEvent, Session

DONE = "chat.run_complete"


class TerminalChat:
    """Prints events as they arrive and answers input requests and UI tools from stdin.

    Ctrl-C cancels the running turn; a second Ctrl-C within the same run quits.
    """

    def __init__(self, broker: BrokerClient, console: Console, as_json: bool = False) -> None:
        self.broker, self.console, self.as_json = broker, console, as_json
        self._streaming: str | None = None  # message_id whose deltas are on the current line
        self._interrupts = 0

    async def run(self, workflow: str, resume: str | None) -> str:
        session = await self.broker.create_session(workflow, chat_id=resume)
        conn = await self._connect(session, 0 if resume else None)
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGINT, lambda: asyncio.ensure_future(self._interrupt(conn)))
        try:
            while True:
                try:
                    event = await conn.next_event(timeout=None)
                except ChatClosed as closed:
                    if closed.code in (1000, 4401, 4403, 4404):
                        raise
                    # A dropped connection: a fresh token, then everything after what we have.
                    session = await self.broker.create_session(workflow, chat_id=session.chat_id)
                    conn = await self._connect(session, conn.last_seq)
                    continue
                status = await self._show(conn, event)
                if status is not None:
                    return status
        finally:
            loop.remove_signal_handler(signal.SIGINT)
            await conn.close()

    async def _connect(self, session: Session, last_seq: int | None) -> ChatConnection:
        conn = await self.broker.connect(session, last_seq=last_seq)
        if not self.as_json:
            self.console.print(f"[dim]chat {session.chat_id} ({session.workflow_name})[/dim]")
        return conn

    async def _interrupt(self, conn: ChatConnection) -> None:
        self._interrupts += 1
        if self._interrupts > 1:
            raise SystemExit(130)
        self.console.print("\n[yellow]cancelling the run… (Ctrl-C again to quit)[/yellow]")
        await conn.cancel()

    async def _show(self, conn: ChatConnection, event: ChatEvent) -> str | None:
        kind, data = event.type, event.data
        if self.as_json and kind != "chat.text_delta":
            print(event.model_dump_json(), flush=True)
        elif not self.as_json:
            self._print(kind, data)
        if kind == "chat.input_request":
            answer = await self._ask(data.get("prompt") or "your answer")
            await conn.say(answer, input_request_id=data["request_id"])
        elif kind == "chat.tool_call" and data.get("kind") == "ui_tool" and data.get("awaiting_response"):
            await conn.respond_ui(data["call_id"], await self._ui_answer(data))
        elif kind == DONE:
            self._interrupts = 0
            return str(data.get("status"))
        return None

    def _print(self, kind: str, data: dict[str, Any]) -> None:
        out = self.console
        if kind == "chat.text_delta":
            if self._streaming != data.get("message_id"):
                self._streaming = data.get("message_id")
                out.print(f"[bold cyan]{data.get('agent')}[/bold cyan]: ", end="")
            out.print(data.get("delta", ""), end="", markup=False, highlight=False)
            return
        if kind == "chat.text":
            streamed = self._streaming == data.get("message_id")
            self._streaming = None
            if streamed:
                out.print()
            elif data.get("visibility", "user") == "user" and data.get("role") != "user":
                out.print(f"[bold cyan]{data.get('agent')}[/bold cyan]: ", end="")
                out.print(data.get("content") or "", markup=False, highlight=False)
        elif kind == "chat.tool_call":
            args = json.dumps(data.get("arguments"))
            out.print(f"[magenta]→ {data.get('agent')} calls {data.get('name')}[/magenta] {args}", markup=True,
                      highlight=False)
        elif kind == "chat.tool_response":
            out.print(f"[magenta]← {data.get('name')}: {data.get('status')}[/magenta]", highlight=False)
        elif kind == "chat.handoff":
            out.print(f"[blue]⇢ {data.get('from_agent')} hands off to {data.get('to_agent')}[/blue]")
        elif kind == "chat.error":
            out.print(f"[red]error {data.get('code')}: {data.get('message')}[/red]", highlight=False)
        elif kind == DONE:
            out.print(f"[green]run {data.get('status')}[/green]")

    async def _ask(self, prompt: str) -> str:
        return await asyncio.to_thread(self.console.input, f"[bold]{prompt}[/bold] > ")

    async def _ui_answer(self, data: dict[str, Any]) -> Any:
        """Choices a UI tool offers become a numbered list; anything else is answered as JSON."""
        props = data.get("props") or {}
        options = props.get("options") or props.get("choices")
        if isinstance(options, list) and options:
            for number, option in enumerate(options, 1):
                label = option.get("label", option) if isinstance(option, dict) else option
                self.console.print(f"  {number}. {label}", markup=False)
            while True:
                picked = await self._ask(f"{data.get('name')}: pick 1-{len(options)}")
                if picked.strip().isdigit() and 1 <= int(picked) <= len(options):
                    chosen = options[int(picked) - 1]
                    return chosen.get("value", chosen) if isinstance(chosen, dict) else chosen
        self.console.print(f"{data.get('name')} wants a JSON answer; props: {json.dumps(props)}", markup=False)
        while True:
            raw = await self._ask("JSON")
            try:
                return json.loads(raw)
            except json.JSONDecodeError as exc:
                self.console.print(f"[red]not JSON: {exc}[/red]")

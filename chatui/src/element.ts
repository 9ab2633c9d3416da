// <mozaiks-chat>: the embeddable chat shell, message stream and artifact host.
import { html, LitElement, nothing, svg, type PropertyValues, type TemplateResult } from "lit";
import { keyed } from "lit/directives/keyed.js";
import { repeat } from "lit/directives/repeat.js";
import { unsafeHTML } from "lit/directives/unsafe-html.js";
import { loadComponent, MountedComponent, type Theme } from "./components.js";
import { Broker, ChatSocket, type ConnectionState, type GetToken, newId } from "./connection.js";
import { renderMarkdown } from "./markdown.js";
import { BrokerError, type ServerEvent, type SessionSummary, type WorkflowInfo } from "./protocol.js";
import { styles } from "./styles.js";
import {
  type ChildChat, type ChildrenItem, type ChildStatus, type InputItem, type Item, type MessageItem, Timeline, type ToolItem,
} from "./timeline.js";

type Mode = "workflow" | "ask";

interface Stored {
  chat_id: string;
  workflow_name: string;
  last_seq: number;
}

class Conversation {
  timeline = new Timeline();
  socket: ChatSocket | null = null;
  state: ConnectionState = "connecting";
  stateMessage: string | null = null;
  sentWhileRunning = new Set<string>();
  replaying = false;  // between chat_meta and chat.resume_boundary: render once, at the boundary
  parent: { chatId: string; workflow: string } | null = null;  // set when opened from a parent's child list
  constructor(readonly workflow: string) {}
}

// A long chat (a replay of thousands of events) renders Markdown only for its newest messages and for
// those scrolled near the view; the rest show their plain text until then.
const EAGER_MARKDOWN = 30;
const MARKDOWN_MARGIN = "1200px 0px";

const CHILD_STATUS: Record<ChildStatus, string> = {
  running: "running", completed: "completed", failed: "failed", cancelled: "cancelled", timed_out: "timed out",
};

const REJECT_REASONS: Record<string, string> = {
  run_in_progress: "Not sent: this workflow takes one message at a time. Wait for the reply, then send again.",
  no_open_input_request: "Not sent: that question was already answered.",
  unknown_input_request: "Not sent: that question was already answered.",
  no_such_ui_tool: "That answer was not needed any more.",
  chat_closed: "This chat has ended.",
};

export class MozaiksChat extends LitElement {
  static styles = styles;
  static properties = {
    brokerUrl: { type: String, attribute: "broker-url" },
    presentation: { type: String, reflect: true },
    theme: { type: String, reflect: true },
    workflow: { type: String },
    askWorkflow: { type: String, attribute: "ask-workflow" },
    showUsage: { type: Boolean, attribute: "show-usage" },
    heading: { type: String },
    storageKey: { type: String, attribute: "storage-key" },
    open: { type: Boolean, reflect: true },
    mode: { state: true },
    sidebar: { state: true },
    tick: { state: true },
  };

  brokerUrl = "";
  presentation: "overlay" | "inline" = "inline";
  theme: "light" | "dark" = "light";
  workflow = "";
  askWorkflow = "ask";
  showUsage = false;
  heading = "Chat";
  storageKey = "default";
  open = false;
  mode: Mode = "workflow";
  sidebar = false;
  tick = 0;

  private tokenSource: GetToken | null = null;
  private conversations: Record<Mode, Conversation | null> = { workflow: null, ask: null };
  private workflows: WorkflowInfo[] = [];
  private sessions: SessionSummary[] = [];
  private mounted = new Map<string, MountedComponent>();
  private hiddenArtifact: string | null = null;
  private renderPending = false;
  private countdownTimer: number | undefined;
  private lastFocusedInput: string | null = null;
  private lastArtifact: string | null = null;
  private stickToBottom = true;
  private markdownShown = new WeakSet<MessageItem>();
  private deferred: { log: Element; observer: IntersectionObserver; seen: WeakSet<Element> } | null = null;

  /** The host's user JWT, for the Session Broker. Called before every broker request. */
  get getToken(): GetToken | null {
    return this.tokenSource;
  }

  set getToken(source: GetToken | null) {
    this.tokenSource = source;
    if (source) void this.restore();
  }

  private get broker(): Broker {
    if (!this.tokenSource) throw new Error("mozaiks-chat: set element.getToken before opening a workflow");
    return new Broker(this.brokerUrl, this.tokenSource);
  }

  private get current(): Conversation | null {
    return this.conversations[this.mode];
  }

  // ------------------------------------------------------------------ public API

  /** Start (or, with options.chatId, resume) a chat of `name` and show it. */
  async openWorkflow(name: string, context: Record<string, unknown> | null = null,
                     options: { chatId?: string } = {}): Promise<string> {
    const mode: Mode = name === this.askWorkflow ? "ask" : "workflow";
    this.mode = mode;
    if (this.presentation === "overlay") this.open = true;
    return this.start(mode, name, context, options.chatId ?? null);
  }

  /** Reopen a past chat (from the session list). */
  resume(chatId: string, workflowName: string): Promise<string> {
    return this.openWorkflow(workflowName, null, { chatId });
  }

  /** Open a child workflow's chat (from a parent's list of children). A host may handle this itself:
   * the element first dispatches a cancelable `mozaiks-open-chat`. The child's view offers a way back. */
  async openChild(chatId: string, workflowName: string): Promise<void> {
    const parent = this.current?.socket ? { chatId: this.current.socket.chatId, workflow: this.current.workflow } : null;
    const proceed = this.dispatchEvent(new CustomEvent("mozaiks-open-chat", {
      detail: { chatId, workflowName, parentChatId: parent?.chatId ?? null },
      bubbles: true, composed: true, cancelable: true,
    }));
    if (!proceed) return;
    await this.resume(chatId, workflowName);
    const conv = this.current;
    if (conv) conv.parent = parent;
    this.scheduleRender();
  }

  /** Switch between the workflow conversation and ask mode; each keeps its own chat. */
  async setMode(mode: Mode): Promise<void> {
    this.mode = mode;
    if (mode === "ask" && !this.conversations.ask && this.tokenSource) {
      await this.start("ask", this.askWorkflow, null, null);
    }
    this.focusComposer();
  }

  toggle(force?: boolean): void {
    this.open = force ?? !this.open;
  }

  /** Stop the running turn: "immediate" now, "after_turn" once the current agent finishes. */
  stop(mode: "immediate" | "after_turn" = "immediate"): void {
    this.current?.socket?.send({ type: "chat.cancel", id: newId(), mode });
  }

  /** Send a message as if typed. */
  send(text: string): void {
    const conv = this.current;
    if (!conv?.socket || !text.trim()) return;
    const id = newId();
    const input = conv.timeline.openInput;
    if (conv.timeline.running && !input) conv.sentWhileRunning.add(id);
    conv.timeline.addLocalUserMessage(id, text);
    conv.socket.send({ type: "user.input.submit", id, text, ...(input ? { input_request_id: input.requestId } : {}) });
    this.stickToBottom = true;
    this.scheduleRender();
  }

  /** Testing aid: drop the socket as a network failure would; the widget reconnects and resumes. */
  simulateDrop(): void {
    (this.current?.socket as ChatSocket | null)?.dropForTest();
  }

  get chatId(): string | null {
    return this.current?.socket?.chatId ?? null;
  }

  get connectionState(): ConnectionState | null {
    return this.current?.state ?? null;
  }

  // ------------------------------------------------------------------ sessions

  private storageName(mode: Mode): string {
    return `mozaiks-chat:${this.storageKey}:${mode}`;
  }

  private stored(mode: Mode): Stored | null {
    try {
      return JSON.parse(sessionStorage.getItem(this.storageName(mode)) ?? "null");
    } catch {
      return null;
    }
  }

  private remember(mode: Mode, value: Stored | null): void {
    this.unsaved.delete(mode);
    try {
      if (value) sessionStorage.setItem(this.storageName(mode), JSON.stringify(value));
      else sessionStorage.removeItem(this.storageName(mode));
    } catch {
      /* storage disabled: the chat still works, it just is not restored after a reload */
    }
  }

  private unsaved = new Map<Mode, Stored>();
  private saveTimer: number | undefined;

  /** The resume point changes with every event: a replay of thousands would write storage thousands of
   * times, so it is written at most every 250 ms and when the page is hidden. */
  private rememberSoon(mode: Mode, value: Stored): void {
    this.unsaved.set(mode, value);
    this.saveTimer ??= window.setTimeout(this.flushSaved, 250);
  }

  private flushSaved = (): void => {
    window.clearTimeout(this.saveTimer);
    this.saveTimer = undefined;
    for (const [mode, value] of [...this.unsaved]) this.remember(mode, value);
  };

  /** After a reload: reattach to the chats this tab had open. Returns whether one was restored. */
  private restoring: Promise<boolean> | null = null;

  restore(): Promise<boolean> {
    this.restoring ??= (async () => {
      let any = false;
      for (const mode of ["workflow", "ask"] as Mode[]) {
        const saved = this.stored(mode);
        if (!saved || this.conversations[mode]) continue;
        try {
          // The page starts empty, so the whole log is replayed (from seq 0) to rebuild the view.
          await this.start(mode, saved.workflow_name, null, saved.chat_id);
          any = true;
        } catch {
          this.remember(mode, null);
        }
      }
      if (!any && this.workflow && !this.conversations.workflow) {
        await this.openWorkflow(this.workflow);
        any = true;
      }
      this.dispatchEvent(new CustomEvent("mozaiks-ready", { detail: { restored: any }, bubbles: true, composed: true }));
      return any;
    })();
    return this.restoring;
  }

  private async start(mode: Mode, name: string, context: Record<string, unknown> | null,
                      chatId: string | null): Promise<string> {
    const previous = this.conversations[mode];
    const conv = new Conversation(name);
    let session;
    try {
      session = await this.broker.openSession(name, context, chatId);
    } catch (error) {
      const message = error instanceof BrokerError ? error.message : `Could not reach the runtime: ${error}`;
      conv.state = "offline";
      conv.stateMessage = message;
      conv.timeline.notice(message, "error");
      this.conversations[mode] = conv;
      this.scheduleRender();
      this.emit("mozaiks-error", { message, code: error instanceof BrokerError ? error.code : "network" });
      throw error;
    }
    const fromSeq = chatId ? await this.loadHistory(conv, session.chat_id) : 0;
    previous?.socket?.close();
    this.clearMounts();
    this.conversations[mode] = conv;
    this.hiddenArtifact = null;
    conv.socket = new ChatSocket(this.broker, session, fromSeq, {
      onEvent: (event) => this.onEvent(conv, event),
      onState: (state, message) => {
        conv.state = state;
        conv.stateMessage = message;
        this.emit("mozaiks-connection", { state, message, chatId: session.chat_id });
        this.scheduleRender();
      },
      onSeq: (seq) => this.rememberSoon(mode, { chat_id: session.chat_id, workflow_name: name, last_seq: seq }),
    });
    this.remember(mode, { chat_id: session.chat_id, workflow_name: name, last_seq: fromSeq });
    this.scheduleRender();
    this.focusComposer();
    return session.chat_id;
  }

  /** A chat being reopened gets its log over HTTP, in pages of a thousand events: far cheaper for the
   * browser than one WebSocket frame per event. The socket then resumes after the last one. Returns
   * that seq; 0 (the socket replays everything) when the broker has no events endpoint. */
  private async loadHistory(conv: Conversation, chatId: string): Promise<number> {
    let events: ServerEvent[];
    try {
      events = await this.broker.history(chatId);
    } catch {
      return 0;
    }
    conv.replaying = true;
    for (const event of events) this.onEvent(conv, event);
    conv.replaying = false;
    return events.at(-1)?.seq ?? 0;
  }

  private onEvent(conv: Conversation, event: ServerEvent): void {
    if (event.type === "ack") {
      const d = event.data;
      if (d.status === "rejected") {
        conv.timeline.removeLocal(d.id);
        conv.timeline.notice(REJECT_REASONS[d.reason] ?? `Not accepted: ${d.reason}`, "error");
      }
    } else if (event.type === "chat.run_complete" && event.data.status === "cancelled" && conv.sentWhileRunning.size) {
      // A message sent mid-run cancelled it: the workflow's double-text policy is "interrupt".
      conv.timeline.apply(event, "Stopped: your new message interrupted the running turn.");
    } else {
      conv.timeline.apply(event);
    }
    if (event.type === "chat.run_start" || event.type === "chat.run_complete") conv.sentWhileRunning.clear();
    if (event.type === "chat.run_complete") this.emit("mozaiks-run-complete", event.data);
    if (event.type === "chat_meta") conv.replaying = (conv.socket?.lastSeq ?? 0) < (event.data.last_seq ?? 0);
    if (event.type === "chat.resume_boundary") conv.replaying = false;
    this.emit("mozaiks-event", event);
    if (!conv.replaying) this.scheduleRender();
  }

  private emit(type: string, detail: unknown): void {
    this.dispatchEvent(new CustomEvent(type, { detail, bubbles: true, composed: true }));
  }

  /** Many events (a replay, a fast stream) become one render per frame. */
  private scheduleRender(): void {
    if (this.renderPending) return;
    this.renderPending = true;
    requestAnimationFrame(() => {
      this.renderPending = false;
      this.tick++;
    });
  }

  private async loadLists(): Promise<void> {
    try {
      [this.workflows, this.sessions] = await Promise.all([this.broker.workflows(), this.broker.sessions()]);
    } catch (error) {
      this.workflows = [];
      this.sessions = [];
      this.current?.timeline.notice(`Could not load the lists: ${(error as Error).message}`, "error");
    }
    this.scheduleRender();
  }

  // ------------------------------------------------------------------ lifecycle

  connectedCallback(): void {
    super.connectedCallback();
    this.addEventListener("keydown", this.onKeydown);
    window.addEventListener("pagehide", this.flushSaved);
    this.countdownTimer = window.setInterval(() => {
      if (this.current?.timeline.openInput?.deadline) this.tick++;
    }, 1000);
  }

  disconnectedCallback(): void {
    super.disconnectedCallback();
    this.removeEventListener("keydown", this.onKeydown);
    window.removeEventListener("pagehide", this.flushSaved);
    this.flushSaved();
    window.clearInterval(this.countdownTimer);
    this.clearMounts();
    for (const conv of Object.values(this.conversations)) conv?.socket?.close();
  }

  private onKeydown = (event: KeyboardEvent): void => {
    if (event.key === "Escape" && this.presentation === "overlay" && this.open) {
      this.open = false;
      void this.updateComplete.then(() => this.renderRoot.querySelector<HTMLElement>(".launcher")?.focus());
    }
  };

  protected willUpdate(changed: PropertyValues): void {
    if (changed.has("open") && this.open) this.focusComposer();
    const log = this.renderRoot?.querySelector?.(".log");
    if (log) this.stickToBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
  }

  protected updated(): void {
    this.syncMounts();
    const log = this.renderRoot.querySelector(".log");
    this.observeDeferred(log);
    if (log && this.stickToBottom) log.scrollTop = log.scrollHeight;
    const tl = this.current?.timeline;
    const input = tl?.openInput;
    if (input && input.requestId !== this.lastFocusedInput) {
      this.lastFocusedInput = input.requestId;
      const first = this.renderRoot.querySelector<HTMLElement>(".inputreq form input, .inputreq form select");
      (first ?? this.composer)?.focus();
    }
  }

  private observeDeferred(log: Element | null): void {
    if (this.deferred?.log !== log) {
      this.deferred?.observer.disconnect();
      this.deferred = log ? { log, observer: new IntersectionObserver(this.onNearView, { root: log, rootMargin: MARKDOWN_MARGIN }),
                              seen: new WeakSet() } : null;
    }
    if (!this.deferred) return;
    for (const el of log!.querySelectorAll(".md.deferred")) {
      if (this.deferred.seen.has(el)) continue;
      this.deferred.seen.add(el);
      this.deferred.observer.observe(el);
    }
  }

  private onNearView = (entries: IntersectionObserverEntry[]): void => {
    const tl = this.current?.timeline;
    let shown = false;
    for (const entry of entries) {
      if (!entry.isIntersecting) continue;
      this.deferred?.observer.unobserve(entry.target);
      const item = tl?.get<MessageItem>((entry.target as HTMLElement).dataset.key ?? "");
      if (item) {
        this.markdownShown.add(item);
        shown = true;
      }
    }
    if (shown) this.scheduleRender();
  };

  private get composer(): HTMLTextAreaElement | null {
    return this.renderRoot?.querySelector?.("form.composer textarea") ?? null;
  }

  private focusComposer(): void {
    void this.updateComplete.then(() => this.composer?.focus());
  }

  // ------------------------------------------------------------------ components

  private themeInfo(): Theme {
    const accent = getComputedStyle(this).getPropertyValue("--_accent").trim() || "#0b5fcc";
    return { mode: this.theme === "dark" ? "dark" : "light", accent };
  }

  private syncMounts(): void {
    const conv = this.current;
    const hosts = new Map<string, HTMLElement>();
    for (const el of this.renderRoot.querySelectorAll<HTMLElement>("[data-mount]")) hosts.set(el.dataset.mount!, el);
    for (const [key, mounted] of this.mounted) {
      if (hosts.get(key) !== mounted.element) {
        mounted.destroy();
        this.mounted.delete(key);
      }
    }
    if (!conv?.socket) return;
    for (const [key, el] of hosts) {
      if (this.mounted.has(key)) continue;
      const callId = key.split("|")[1];
      const tool = conv.timeline.items.find((i): i is ToolItem => i.kind === "tool" && i.callId === callId);
      if (!tool?.ui) continue;
      const mounted = new MountedComponent(el);
      this.mounted.set(key, mounted);
      const socket = conv.socket;
      let answered = tool.ui.answered;
      const ui = tool.ui;
      void mounted.mount(loadComponent(this.brokerUrl, conv.workflow, ui.component, socket.currentToken), {
        props: structuredClone(ui.props),
        respond: (value: unknown) => {
          if (answered) return;
          answered = true;
          socket.send({ type: "ui_tool_response", id: newId(), call_id: callId, response: value });
        },
        dismiss: () => {
          if (ui.display === "artifact") this.hiddenArtifact = callId;
          this.scheduleRender();
        },
        theme: this.themeInfo(),
      });
      if (ui.display === "artifact" && !ui.answered && this.lastArtifact !== callId) {
        this.lastArtifact = callId;
        this.renderRoot.querySelector<HTMLElement>(".artifact")?.focus();
      }
    }
  }

  private clearMounts(): void {
    for (const mounted of this.mounted.values()) mounted.destroy();
    this.mounted.clear();
  }

  // ------------------------------------------------------------------ rendering

  protected render(): TemplateResult {
    if (this.presentation !== "overlay") return this.renderShell();
    return html`
      <button class="launcher" type="button" aria-label=${this.open ? "Close chat" : "Open chat"}
              aria-expanded=${String(this.open)} @click=${() => this.toggle()}>${this.open ? "×" : BUBBLE}</button>
      ${this.open ? this.renderShell() : nothing}`;
  }

  private renderShell(): TemplateResult {
    const conv = this.current;
    const tl = conv?.timeline;
    const artifact = tl?.artifact;
    const showArtifact = !!artifact && artifact.callId !== this.hiddenArtifact;
    const overlay = this.presentation === "overlay";
    return html`
      <section class="shell ${overlay ? "overlay" : ""} ${showArtifact ? "with-artifact" : ""}"
               role=${overlay ? "dialog" : "region"} aria-label=${this.heading} @click=${this.onClick}>
        <header>
          <button type="button" aria-label="Chats and workflows" aria-expanded=${String(this.sidebar)}
                  @click=${this.toggleSidebar}>☰</button>
          <h2>${this.heading}${conv ? html` · <span class="wf">${conv.workflow}</span>` : nothing}</h2>
          <div class="modes" role="group" aria-label="Mode">
            <button type="button" aria-pressed=${String(this.mode === "workflow")}
                    @click=${() => this.setMode("workflow")}>Workflow</button>
            <button type="button" aria-pressed=${String(this.mode === "ask")}
                    @click=${() => this.setMode("ask")}>Ask</button>
          </div>
          ${this.renderConnection(conv)}
          ${overlay ? html`<button type="button" aria-label="Close chat" @click=${() => this.toggle(false)}>×</button>`
                    : nothing}
        </header>
        <div class="body">
          ${this.sidebar ? this.renderSidebar() : nothing}
          <div class="main">
            ${conv?.parent ? this.renderBack(conv.parent) : nothing}
            <div class="log" role="log" aria-live="polite" aria-relevant="additions" aria-label="Messages"
                 tabindex="0">
              ${tl && tl.items.length
                ? repeat(tl.items, (item) => item.key,
                         (item, index) => this.renderItem(item, tl, index >= tl.items.length - EAGER_MARKDOWN))
                : html`<p class="empty">${conv ? "Connecting…" : "Pick a workflow from ☰ to start."}</p>`}
            </div>
            <div class="thinking" aria-live="polite">${tl?.thinking ? `${tl.thinking} is thinking…` : ""}</div>
            ${this.renderStatusLine(conv)}
            ${this.renderComposer(conv)}
          </div>
          ${showArtifact ? this.renderArtifact(artifact!) : nothing}
        </div>
      </section>`;
  }

  private renderConnection(conv: Conversation | null): TemplateResult {
    const state = conv?.state ?? "closed";
    const label = { connecting: "Connecting", connected: "Connected", reconnecting: "Reconnecting",
                    offline: "Offline", closed: "Not connected" }[state];
    return html`<span class="conn" data-state=${state} role="status" title=${label}><span class="dot"></span><span class="label">${label}</span></span>`;
  }

  private renderStatusLine(conv: Conversation | null): TemplateResult | typeof nothing {
    if (!conv) return nothing;
    const tl = conv.timeline;
    const alert = conv.stateMessage && conv.state !== "connected";
    let text = alert ? conv.stateMessage : "";
    if (!text) {
      if (tl.status !== "active") text = `Chat ${tl.status}.`;
      else if (tl.openInput) text = `${tl.openInput.agent || "The assistant"} is waiting for your answer.`;
      else if (tl.artifact?.ui && !tl.artifact.ui.answered) text = "Waiting for your answer in the panel.";
      else if (tl.phase === "waiting_children") text = waitingFor(tl.openChildren);
    }
    return html`<div class="status-line" role="status" ?data-alert=${!!alert}>${text}</div>`;
  }

  private renderComposer(conv: Conversation | null): TemplateResult {
    const tl = conv?.timeline;
    const running = !!tl?.running && !tl.openInput;
    const disabled = !conv?.socket || (tl?.status !== undefined && tl.status !== "active");
    return html`
      <form class="composer" @submit=${this.onSubmit}>
        <label class="sr-only" for="composer">Message</label>
        <textarea id="composer" rows="1" placeholder=${tl?.openInput ? "Type your answer…" : "Type a message…"}
                  ?readonly=${disabled && !!conv?.socket} @keydown=${this.onComposerKey}></textarea>
        ${running
          ? html`<button type="button" class="danger" aria-label="Stop" @click=${() => this.stop("immediate")}>Stop</button>
                 <button type="button" aria-label="Stop after this turn" title="Stop after this turn"
                         @click=${() => this.stop("after_turn")}>After turn</button>`
          : nothing}
        <button type="submit" class="primary" ?disabled=${disabled}>Send</button>
      </form>`;
  }

  private renderSidebar(): TemplateResult {
    return html`
      <nav class="sidebar" aria-label="Chats and workflows">
        <h3>Start a workflow</h3>
        <ul>${this.workflows.map((w) => html`<li><button type="button" @click=${() => this.pick(w.name)}>
          ${w.display_name}<small>${w.description}</small></button></li>`)}</ul>
        <h3>Your chats</h3>
        <ul>${this.sessions.map((s) => html`<li><button type="button" @click=${() => this.reopen(s)}>
          ${s.workflow_name}<small>${s.status}${s.phase ? ` · ${s.phase}` : ""} · ${s.updated_at.slice(0, 16).replace("T", " ")}</small>
        </button></li>`)}</ul>
      </nav>`;
  }

  private renderItem(item: Item, tl: Timeline, recent: boolean): TemplateResult | typeof nothing {
    switch (item.kind) {
      case "message": {
        const user = item.role === "user";
        if (recent && !item.streaming && !user) this.markdownShown.add(item);
        return html`<div class="msg ${user ? "user" : ""}" aria-busy=${String(item.streaming)}>
          <div class="who">${user ? "You" : item.agent}</div>
          ${item.streaming || user
            ? html`<div class="text">${item.content}</div>`
            : this.markdownShown.has(item)
              ? html`<div class="md">${unsafeHTML(renderMarkdown(item.content))}</div>`
              : html`<div class="md deferred" data-key=${item.key}>${item.content}</div>`}
          ${item.queued ? html`<div class="queued">Queued: sent after the current turn</div>` : nothing}
        </div>`;
      }
      case "tool":
        return this.renderTool(item);
      case "input":
        return this.renderInput(item, tl);
      case "children":
        return this.renderChildren(item);
      case "handoff":
        return html`<div class="divider" role="separator">${item.text}</div>`;
      case "error":
        return html`<div class="error" role="alert">${item.text}</div>`;
      case "usage":
        return this.showUsage ? html`<div class="notice">Usage: ${item.text}</div>` : nothing;
      default:
        return html`<div class="notice">${item.text}</div>`;
    }
  }

  private renderChildren(item: ChildrenItem): TemplateResult {
    const heading = item.merged
      ? `Child workflows merged: ${item.merged.completed} completed, ${item.merged.failed} failed`
      : `Child workflows: ${item.children.filter((c) => c.status !== "running").length} of ${item.total} done`;
    return html`
      <section class="children" aria-label="Child workflows" ?data-merged=${!!item.merged}>
        <div class="children-head">${heading}</div>
        <ul>${repeat(item.children, (c) => c.chatId, (c) => this.renderChild(c))}</ul>
      </section>`;
  }

  private renderChild(child: ChildChat): TemplateResult {
    return html`
      <li data-status=${child.status}>
        <button type="button" class="link" aria-label=${`Open the ${child.workflow} chat${child.journey ? ` (${child.journey})` : ""}`}
                @click=${() => void this.openChild(child.chatId, child.workflow).catch(() => undefined)}>${child.workflow}</button>
        ${child.journey ? html`<span class="journey">${child.journey}</span>` : nothing}
        <span class="child-status" data-s=${child.status}>${CHILD_STATUS[child.status] ?? child.status}</span>
        ${child.summary ? html`<div class="summary">${child.summary}</div>` : nothing}
      </li>`;
  }

  private renderBack(parent: { chatId: string; workflow: string }): TemplateResult {
    return html`<div class="back"><button type="button" class="link"
      @click=${() => void this.resume(parent.chatId, parent.workflow).catch(() => undefined)}>← Back to ${parent.workflow}</button></div>`;
  }

  private renderTool(item: ToolItem): TemplateResult {
    const status = item.status === "waiting" ? "waiting for you" : item.status;
    const duration = item.durationMs !== null ? ` · ${(item.durationMs / 1000).toFixed(1)} s` : "";
    const ui = item.ui;
    return html`
      <details class="tool" data-call=${item.callId}>
        <summary><span class="kind">${item.ui ? "UI" : "tool"}</span><span class="name">${item.name}</span>
          <span class="agent">${item.agent}</span>
          <span class="status" data-s=${item.status}>${status}${duration}</span></summary>
        <div class="details">
          <div>Arguments</div><pre>${json(item.args)}</pre>
          ${item.progress !== null && item.status === "running"
            ? html`<progress max="1" .value=${item.progress} aria-label="Progress"></progress> ${item.progressMessage}`
            : nothing}
          ${item.error ? html`<div>Error</div><pre>${item.error}</pre>` : nothing}
          ${item.result !== undefined && item.result !== null ? html`<div>Result</div><pre>${json(item.result)}</pre>` : nothing}
        </div>
      </details>
      ${item.progress !== null && item.status === "running" && !ui
        ? html`<progress class="tool-progress" max="1" .value=${item.progress}
                         aria-label=${`${item.name} progress`}></progress>`
        : nothing}
      ${ui?.display === "inline"
        ? keyed(item.callId, html`<div class="inline-host" data-mount=${`inline|${item.callId}`}></div>`)
        : nothing}
      ${ui?.display === "artifact" && this.hiddenArtifact === item.callId
        ? html`<button type="button" @click=${() => { this.hiddenArtifact = null; this.scheduleRender(); }}>
                 Show ${ui.component}</button>`
        : nothing}`;
  }

  private renderInput(item: InputItem, tl: Timeline): TemplateResult | typeof nothing {
    if (item.answered || tl.openInput !== item) return nothing;
    const left = item.deadline ? Math.max(0, Math.round((item.deadline - Date.now()) / 1000)) : null;
    const schema = item.schema;
    const fields = schema?.type === "object" && schema.properties ? Object.entries<any>(schema.properties) : [];
    return html`
      <div class="inputreq" role="group" aria-label="Question from ${item.agent}">
        ${item.prompt && item.prompt !== this.lastAgentText(tl)
          ? html`<div><strong>${item.agent}</strong> asks: ${item.prompt}</div>`
          : html`<div><strong>${item.agent}</strong> is waiting for your answer.</div>`}
        ${left !== null ? html`<div class="countdown" aria-live="off">${fmtSeconds(left)} left to answer</div>` : nothing}
        ${fields.length
          ? html`<form @submit=${(e: Event) => this.submitForm(e, item, fields)}>
              ${fields.map(([name, spec]) => this.renderField(name, spec, (schema!.required ?? []).includes(name)))}
              <button class="primary" type="submit">Answer</button>
            </form>`
          : nothing}
      </div>`;
  }

  private lastAgentText(tl: Timeline): string | null {
    for (let i = tl.items.length - 1; i >= 0; i--) {
      const item = tl.items[i];
      if (item.kind === "message" && item.role !== "user") return item.content;
    }
    return null;
  }

  private renderField(name: string, spec: any, required: boolean): TemplateResult {
    const label = spec.title ?? name;
    if (Array.isArray(spec.enum)) {
      return html`<label>${label}<select name=${name} ?required=${required}>
        ${spec.enum.map((v: unknown) => html`<option value=${String(v)}>${String(v)}</option>`)}</select></label>`;
    }
    if (spec.type === "boolean") return html`<label><span><input type="checkbox" name=${name}> ${label}</span></label>`;
    const type = spec.type === "number" || spec.type === "integer" ? "number" : "text";
    return html`<label>${label}<input name=${name} type=${type} ?required=${required}
                  step=${spec.type === "integer" ? "1" : "any"}></label>`;
  }

  private renderArtifact(tool: ToolItem): TemplateResult {
    const ui = tool.ui!;
    return html`
      <aside class="artifact" aria-label=${`${ui.component} panel`} tabindex="-1">
        <header><h2>${ui.component}</h2>
          <button type="button" aria-label="Hide panel" @click=${() => { this.hiddenArtifact = tool.callId; this.scheduleRender(); }}>×</button>
        </header>
        ${ui.answered ? html`<div class="banner">Answered</div>` : nothing}
        ${keyed(tool.callId, html`<div class="mount" data-mount=${`artifact|${tool.callId}`}></div>`)}
      </aside>`;
  }

  // ------------------------------------------------------------------ handlers

  private onSubmit = (event: Event): void => {
    event.preventDefault();
    const box = this.composer;
    if (!box) return;
    if (!this.current?.socket || box.readOnly) return;
    const text = box.value;
    box.value = "";
    this.send(text);
  };

  private onComposerKey = (event: KeyboardEvent): void => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      this.onSubmit(event);
    }
  };

  private submitForm(event: Event, item: InputItem, fields: [string, any][]): void {
    event.preventDefault();
    const form = event.currentTarget as HTMLFormElement;
    const values: Record<string, unknown> = {};
    for (const [name, spec] of fields) {
      const field = form.elements.namedItem(name) as HTMLInputElement | HTMLSelectElement | null;
      if (!field) continue;
      if (spec.type === "boolean") values[name] = (field as HTMLInputElement).checked;
      else if (spec.type === "number" || spec.type === "integer") values[name] = field.value === "" ? null : Number(field.value);
      else values[name] = field.value;
    }
    const conv = this.current;
    if (!conv?.socket) return;
    const id = newId();
    const text = JSON.stringify(values);
    conv.timeline.addLocalUserMessage(id, text);
    conv.socket.send({ type: "user.input.submit", id, text, input_request_id: item.requestId });
    this.scheduleRender();
  }

  private onClick = (event: Event): void => {
    const target = event.target as HTMLElement;
    if (target.matches("button.copy")) {
      const code = target.parentElement?.querySelector("pre")?.textContent ?? "";
      void navigator.clipboard?.writeText(code).then(() => { target.textContent = "Copied"; },
                                                     () => { target.textContent = "Copy failed"; });
    }
  };

  private toggleSidebar = (): void => {
    this.sidebar = !this.sidebar;
    if (this.sidebar) void this.loadLists();
  };

  private async pick(name: string): Promise<void> {
    this.sidebar = false;
    await this.openWorkflow(name).catch(() => undefined);
  }

  private async reopen(session: SessionSummary): Promise<void> {
    this.sidebar = false;
    await this.resume(session.chat_id, session.workflow_name).catch(() => undefined);
  }
}

const BUBBLE = svg`<svg width="26" height="26" viewBox="0 0 24 24" aria-hidden="true"><path fill="currentColor"
  d="M4 4h16a2 2 0 0 1 2 2v9a2 2 0 0 1-2 2H9l-5 4v-4a2 2 0 0 1-2-2V6a2 2 0 0 1 2-2z"/></svg>`;

function json(value: unknown): string {
  try {
    return typeof value === "string" ? value : JSON.stringify(value, null, 2);
  } catch {
    return String(value);
  }
}

function waitingFor(group: ChildrenItem | null): string {
  const running = group?.children.filter((c) => c.status === "running").length ?? 0;
  return running ? `Waiting for ${running} child workflow${running === 1 ? "" : "s"} to finish.`
                 : "Waiting for the child workflows to finish.";
}

function fmtSeconds(total: number): string {
  return `${Math.floor(total / 60)}:${String(total % 60).padStart(2, "0")}`;
}

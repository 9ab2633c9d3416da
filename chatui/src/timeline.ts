// Folds the protocol's events into what the widget shows. Pure data: no DOM here, so a replay of
// thousands of events costs one render, not thousands.
import type { ServerEvent } from "./protocol.js";

export interface MessageItem {
  kind: "message";
  key: string;
  agent: string;
  role: string;
  content: string;
  streaming: boolean;
  queued: boolean;  // a user message waiting behind the running turn (double-text: enqueue)
}

export interface ToolItem {
  kind: "tool";
  key: string;
  callId: string;
  name: string;
  agent: string;
  args: unknown;
  status: "running" | "waiting" | "ok" | "error" | "timeout" | "cancelled";
  durationMs: number | null;
  progress: number | null;
  progressMessage: string;
  result: unknown;
  error: string | null;
  ui: { component: string; display: "inline" | "artifact"; props: unknown; answered: boolean } | null;
}

export interface InputItem {
  kind: "input";
  key: string;
  requestId: string;
  agent: string;
  prompt: string;
  schema: Record<string, any> | null;
  deadline: number | null;
  answered: boolean;
}

export type ChildStatus = "running" | "completed" | "failed" | "cancelled" | "timed_out";

export interface ChildChat {
  chatId: string;
  workflow: string;
  journey: string;
  index: number;
  status: ChildStatus;
  summary: string | null;
}

/** One fan-out: the child workflows a run started, live until the parent merges their outcomes. */
export interface ChildrenItem {
  kind: "children";
  key: string;
  total: number;
  children: ChildChat[];
  merged: { completed: number; failed: number; resumeAgent: string | null } | null;
}

export interface MarkerItem {
  kind: "handoff" | "error" | "notice" | "usage";
  key: string;
  text: string;
}

export type Item = MessageItem | ToolItem | InputItem | ChildrenItem | MarkerItem;

export type Phase = "idle" | "running" | "waiting_input" | "waiting_children" | null;

export class Timeline {
  items: Item[] = [];
  status = "active";
  phase: Phase = null;
  thinking: string | null = null;
  workflowName = "";
  lastRun: string | null = null;  // how the latest run ended: completed | failed | cancelled | max_turns
  private byKey = new Map<string, Item>();
  version = 0;  // bumped on every change the view must show

  get openInput(): InputItem | null {
    for (let i = this.items.length - 1; i >= 0; i--) {
      const item = this.items[i];
      if (item.kind === "input") return item.answered ? null : item;
    }
    return null;
  }

  /** The newest artifact-display UI tool: what the side panel shows. */
  get artifact(): ToolItem | null {
    for (let i = this.items.length - 1; i >= 0; i--) {
      const item = this.items[i];
      if (item.kind === "tool" && item.ui?.display === "artifact") return item;
    }
    return null;
  }

  /** The fan-out whose children are still being waited for, if any. */
  get openChildren(): ChildrenItem | null {
    for (let i = this.items.length - 1; i >= 0; i--) {
      const item = this.items[i];
      if (item.kind === "children") return item.merged ? null : item;
    }
    return null;
  }

  get running(): boolean {
    return this.status === "active"
      && (this.phase === "running" || this.phase === "waiting_children" || this.thinking !== null);
  }

  private findChild(chatId: string): ChildChat | undefined {
    for (let i = this.items.length - 1; i >= 0; i--) {
      const item = this.items[i];
      const child = item.kind === "children" ? item.children.find((c) => c.chatId === chatId) : undefined;
      if (child) return child;
    }
    return undefined;
  }

  private add(item: Item): void {
    this.items.push(item);
    this.byKey.set(item.key, item);
  }

  get<T extends Item>(key: string): T | undefined {
    return this.byKey.get(key) as T | undefined;
  }

  /** A user message shown before the runtime confirmed it (its id is the client message id). */
  addLocalUserMessage(messageId: string, text: string): void {
    this.add({ kind: "message", key: `m:${messageId}`, agent: "user", role: "user", content: text,
               streaming: false, queued: false });
    this.version++;
  }

  removeLocal(messageId: string): void {
    const item = this.byKey.get(`m:${messageId}`);
    if (!item) return;
    this.items = this.items.filter((i) => i !== item);
    this.byKey.delete(item.key);
    this.version++;
  }

  notice(text: string, kind: MarkerItem["kind"] = "notice"): void {
    this.add({ kind, key: `n:${this.items.length}:${Date.now()}`, text });
    this.version++;
  }

  /** Fold one event in; `endLabel` overrides how a run's end is announced (the widget knows why). */
  apply(event: ServerEvent, endLabel?: string): void {
    const d = event.data ?? {};
    switch (event.type) {
      case "chat_meta":
        this.status = d.status;
        this.phase = d.phase ?? null;
        this.workflowName = d.workflow_name;
        break;
      case "chat.run_start":
        this.status = "active";
        this.phase = "running";
        for (const item of this.items) if (item.kind === "message" && item.queued) item.queued = false;
        break;
      case "chat.select_speaker":
        this.thinking = d.agent;
        break;
      case "chat.text_delta": {
        const key = `m:${d.message_id}`;
        const item = this.get<MessageItem>(key);
        if (item) {
          if (item.streaming) item.content += d.delta;
        } else {
          this.add({ kind: "message", key, agent: d.agent, role: "assistant", content: d.delta, streaming: true,
                     queued: false });
        }
        this.thinking = null;
        break;
      }
      case "chat.text": {
        const key = `m:${d.message_id}`;
        if (d.visibility === "trace") {
          // Trace text is not for the user: drop anything a runtime streamed for it.
          const streamed = this.byKey.get(key);
          if (streamed) {
            this.items = this.items.filter((i) => i !== streamed);
            this.byKey.delete(key);
          }
          break;
        }
        const item = this.get<MessageItem>(key);
        if (item) {
          item.content = d.content;  // the durable text replaces whatever was streamed
          item.streaming = false;
          item.agent = d.agent;
          // The runtime took the user's own message while a run is going: it waits behind that run.
          if (d.role === "user" && this.phase === "running") item.queued = true;
        } else {
          this.add({ kind: "message", key, agent: d.agent, role: d.role, content: d.content ?? "",
                     streaming: false, queued: d.role === "user" && this.phase === "running" });
        }
        if (d.role !== "user") this.thinking = null;
        break;
      }
      case "chat.tool_call": {
        const key = `t:${d.call_id}`;
        const ui = d.kind === "ui_tool" && d.component
          ? { component: d.component, display: d.display === "inline" ? "inline" as const : "artifact" as const,
              props: d.props ?? {}, answered: false }
          : null;
        const existing = this.get<ToolItem>(key);
        if (existing) {
          existing.ui = ui ?? existing.ui;
          existing.status = d.awaiting_response ? "waiting" : existing.status;
        } else {
          this.add({ kind: "tool", key, callId: d.call_id, name: d.name, agent: d.agent ?? event.agent ?? "",
                     args: d.arguments ?? {}, status: d.awaiting_response ? "waiting" : "running", durationMs: null,
                     progress: null, progressMessage: "", result: undefined, error: null, ui });
        }
        this.thinking = null;
        break;
      }
      case "tool_progress": {
        const item = this.get<ToolItem>(`t:${d.call_id}`);
        if (item) {
          item.progress = typeof d.progress === "number" ? d.progress : item.progress;
          item.progressMessage = d.message ?? "";
        }
        break;
      }
      case "chat.tool_response": {
        const item = this.get<ToolItem>(`t:${d.call_id}`);
        if (item) {
          item.status = d.status;
          item.durationMs = d.duration_ms ?? null;
          item.result = d.result;
          item.error = d.error ?? null;
          if (item.ui) item.ui.answered = true;
        }
        break;
      }
      case "chat.ui_tool_complete":
      case "chat.ui_tool_dismiss": {
        const item = this.get<ToolItem>(`t:${d.call_id}`);
        if (item?.ui) item.ui.answered = true;
        break;
      }
      case "chat.input_request":
        this.add({ kind: "input", key: `i:${d.request_id}`, requestId: d.request_id, agent: d.agent ?? "",
                   prompt: d.prompt ?? "", schema: d.input_schema ?? null,
                   deadline: d.timeout_s ? Date.parse(event.timestamp ?? "") + d.timeout_s * 1000 || null : null,
                   answered: false });
        this.phase = "waiting_input";
        this.thinking = null;
        break;
      case "chat.input_ack": {
        const item = this.get<InputItem>(`i:${d.request_id}`);
        if (item) item.answered = true;
        if (d.message_id) {
          const queued = this.get<MessageItem>(`m:${d.message_id}`);
          if (queued) queued.queued = false;
        }
        this.phase = "running";
        break;
      }
      case "chat.child_started": {
        let group = this.openChildren;
        if (!group) {
          group = { kind: "children", key: `k:${event.seq ?? this.items.length}`, total: d.total ?? 0, children: [],
                    merged: null };
          this.add(group);
        }
        if (!group.children.some((c) => c.chatId === d.child_chat_id)) {
          group.children.push({ chatId: d.child_chat_id, workflow: d.workflow_name ?? "", journey: d.journey ?? "",
                                index: d.index ?? group.children.length, status: "running", summary: null });
          group.children.sort((a, b) => a.index - b.index);
        }
        group.total = Math.max(group.total, d.total ?? 0, group.children.length);
        this.phase = "waiting_children";
        this.thinking = null;
        break;
      }
      case "chat.child_completed": {
        const child = this.findChild(d.child_chat_id);
        if (child) {
          child.status = d.status;
          child.summary = d.summary ?? null;
        }
        break;
      }
      case "chat.children_merged": {
        const group = this.openChildren;
        if (group) group.merged = { completed: d.completed ?? 0, failed: d.failed ?? 0, resumeAgent: d.resume_agent ?? null };
        if (this.phase === "waiting_children") this.phase = "running";
        break;
      }
      case "chat.handoff":
        this.add({ kind: "handoff", key: `h:${event.seq}`, text: `${d.from_agent} → ${d.to_agent}` });
        break;
      case "chat.error":
        this.add({ kind: "error", key: `e:${event.seq ?? this.items.length}`, text: d.message ?? d.code });
        break;
      case "chat.usage_summary": {
        const totals = d.totals ?? {};
        this.add({ kind: "usage", key: `u:${event.seq}`,
                   text: `${totals.total_tokens ?? 0} tokens (${totals.prompt_tokens ?? 0} in, ${totals.completion_tokens ?? 0} out)` });
        break;
      }
      case "chat.run_complete": {
        this.thinking = null;
        this.phase = "idle";
        const status = d.status as string;
        this.lastRun = status;
        this.add({ kind: "notice", key: `r:${event.seq}`, text: endLabel ?? RUN_END[status] ?? `Run ended: ${status}` });
        for (const item of this.items) {
          if (item.kind === "message") item.streaming = false;
          if (item.kind === "tool" && (item.status === "running" || item.status === "waiting")) item.status = "cancelled";
        }
        break;
      }
      default:
        return;
    }
    this.version++;
  }
}

const RUN_END: Record<string, string> = {
  completed: "Completed",
  failed: "The run failed.",
  cancelled: "Stopped.",
  max_turns: "The run stopped: it reached its turn limit.",
};

// The Session Broker's HTTP API and one chat's WebSocket, with resume, backoff and token refresh.
import {
  BrokerError, closeInfo, type ServerEvent, type SessionResponse, type SessionSummary, type TokenResponse,
  type WorkflowInfo,
} from "./protocol.js";

export type GetToken = () => string | Promise<string>;

export class Broker {
  constructor(private base: string, private getToken: GetToken) {}

  async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    const token = await this.getToken();
    const response = await fetch(this.base.replace(/\/$/, "") + path, {
      method,
      headers: { Authorization: `Bearer ${token}`, ...(body === undefined ? {} : { "Content-Type": "application/json" }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const payload = await response.json().catch(() => null);
    if (!response.ok) {
      const error = payload?.error ?? {};
      throw new BrokerError(response.status, error.code ?? "http_error", error.message ?? `HTTP ${response.status}`);
    }
    return payload as T;
  }

  openSession(workflowName: string, context: Record<string, unknown> | null, chatId: string | null) {
    return this.request<SessionResponse>("POST", "/api/mozaiks/sessions",
      { workflow_name: workflowName, chat_id: chatId, context });
  }

  refreshToken(chatId: string) {
    return this.request<TokenResponse>("POST", `/api/mozaiks/sessions/${encodeURIComponent(chatId)}/token`);
  }

  /** A chat's whole durable log, oldest first. */
  async history(chatId: string): Promise<ServerEvent[]> {
    const events: ServerEvent[] = [];
    let after = 0;
    for (;;) {
      const page = await this.request<{ events: ServerEvent[]; next_after_seq: number | null }>(
        "GET", `/api/mozaiks/sessions/${encodeURIComponent(chatId)}/events?after_seq=${after}&limit=1000`);
      events.push(...page.events);
      if (page.next_after_seq === null || page.next_after_seq === undefined) return events;
      after = page.next_after_seq;
    }
  }

  async workflows(): Promise<WorkflowInfo[]> {
    return (await this.request<{ workflows: WorkflowInfo[] }>("GET", "/api/mozaiks/workflows")).workflows;
  }

  async sessions(): Promise<SessionSummary[]> {
    return (await this.request<{ sessions: SessionSummary[] }>("GET", "/api/mozaiks/sessions?limit=50")).sessions;
  }
}

export type ConnectionState = "connecting" | "connected" | "reconnecting" | "offline" | "closed";

export interface ChatSocketHooks {
  onEvent(event: ServerEvent): void;
  onState(state: ConnectionState, message: string | null): void;
  onSeq(lastSeq: number): void;
}

const BACKOFF_MS = [250, 500, 1000, 2000, 4000, 8000];
const REFRESH_EARLY_MS = 60_000;

export function newId(): string {
  return globalThis.crypto?.randomUUID?.() ?? `c-${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
}

/** One chat's socket. Durable events are delivered once each, in seq order, across any number of
 * reconnects: the resume point is the highest seq seen, and anything at or below it is dropped. */
export class ChatSocket {
  lastSeq: number;
  private ws: WebSocket | null = null;
  private attempt = 0;
  private stopped = false;
  private retryTimer: number | undefined;
  private refreshTimer: number | undefined;
  private outbox: string[] = [];
  private token: string;
  private expiresAt: number;

  constructor(private broker: Broker, readonly session: SessionResponse, lastSeq: number,
              private hooks: ChatSocketHooks) {
    this.lastSeq = lastSeq;
    this.token = session.runtime_token;
    this.expiresAt = Date.parse(session.expires_at);
    this.scheduleRefresh();
    this.connect();
  }

  /** The runtime token for this chat (also authorises loading the workflow's components). */
  get currentToken(): string {
    return this.token;
  }

  get chatId(): string {
    return this.session.chat_id;
  }

  send(message: Record<string, unknown>): void {
    const text = JSON.stringify(message);
    if (this.ws?.readyState === WebSocket.OPEN && this.authed) this.ws.send(text);
    else this.outbox.push(text);  // sent once the next socket is authenticated; ids make resends safe
  }

  close(): void {
    this.stopped = true;
    window.clearTimeout(this.retryTimer);
    window.clearTimeout(this.refreshTimer);
    this.ws?.close(1000);
    this.hooks.onState("closed", null);
  }

  /** Drop the socket as a network failure would (used by tests and the "reconnect" control). */
  dropForTest(): void {
    this.ws?.close(4000);
  }

  private authed = false;

  private connect(): void {
    if (this.stopped) return;
    this.hooks.onState(this.attempt === 0 ? "connecting" : "reconnecting", null);
    // The token goes in the first frame, never in the URL (URLs end up in logs).
    const ws = new WebSocket(this.session.ws_url, ["mozaiks.v1"]);
    this.ws = ws;
    this.authed = false;
    ws.onopen = () => {
      ws.send(JSON.stringify({ type: "auth", token: this.token, last_seq: this.lastSeq }));
    };
    ws.onmessage = (message) => {
      let event: ServerEvent;
      try {
        event = JSON.parse(String(message.data));
      } catch {
        return;
      }
      if (event.type === "chat_meta") {
        this.authed = true;
        this.attempt = 0;
        this.hooks.onState("connected", null);
        for (const text of this.outbox.splice(0)) ws.send(text);
      }
      if (event.seq !== null && event.seq !== undefined) {
        if (event.seq <= this.lastSeq) return;  // already rendered (at-least-once delivery)
        this.lastSeq = event.seq;
        this.hooks.onSeq(event.seq);
      }
      this.hooks.onEvent(event);
    };
    ws.onclose = (close) => {
      if (this.ws !== ws || this.stopped) return;
      this.ws = null;
      this.authed = false;
      const info = closeInfo(close.code);
      if (!info.retry) {
        this.stopped = true;
        this.hooks.onState("offline", info.message);
        return;
      }
      this.hooks.onState("reconnecting", info.message);
      const delay = BACKOFF_MS[Math.min(this.attempt, BACKOFF_MS.length - 1)] * (0.75 + Math.random() / 2);
      this.attempt += 1;
      const renew = close.code === 4401 || Date.now() > this.expiresAt - 5_000;
      this.retryTimer = window.setTimeout(() => void this.reconnect(renew), delay);
    };
  }

  private async reconnect(renew: boolean): Promise<void> {
    if (renew) {
      try {
        await this.refresh();
      } catch (error) {
        if (error instanceof BrokerError && error.status !== 429 && error.status < 500) {
          this.stopped = true;
          this.hooks.onState("offline", error.message);
          return;
        }
      }
    }
    this.connect();
  }

  private async refresh(): Promise<void> {
    const fresh = await this.broker.refreshToken(this.chatId);
    this.token = fresh.runtime_token;
    this.expiresAt = Date.parse(fresh.expires_at);
    this.scheduleRefresh();
  }

  /** A fresh token before the current one expires, so a reconnect never starts with a stale one. */
  private scheduleRefresh(): void {
    window.clearTimeout(this.refreshTimer);
    const wait = Math.max(5_000, this.expiresAt - Date.now() - REFRESH_EARLY_MS);
    this.refreshTimer = window.setTimeout(() => {
      if (!this.stopped) this.refresh().catch(() => this.scheduleRefresh());
    }, wait);
  }
}

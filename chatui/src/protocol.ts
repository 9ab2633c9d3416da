// The parts of docs/protocol.md (PROTOCOL v1) the widget speaks.

export interface ServerEvent {
  type: string;
  seq: number | null;
  chat_id?: string;
  timestamp?: string;
  agent?: string | null;
  data: Record<string, any>;
}

export interface SessionResponse {
  chat_id: string;
  workflow_name: string;
  status: "created" | "resumed";
  ws_url: string;
  runtime_token: string;
  expires_at: string;
}

export interface TokenResponse {
  runtime_token: string;
  expires_at: string;
}

export interface WorkflowInfo {
  name: string;
  display_name: string;
  description: string;
}

export interface SessionSummary {
  chat_id: string;
  workflow_name: string;
  status: string;
  phase: string | null;
  created_at: string;
  updated_at: string;
}

/** What each close code of PROTOCOL §4 means to the person in front of the widget, and whether
 * reconnecting can help. */
export const CLOSE_CODES: Record<number, { message: string; retry: boolean }> = {
  1000: { message: "The connection was closed.", retry: false },
  1006: { message: "Connection lost. Reconnecting…", retry: true },
  1009: { message: "A message was too large for the runtime.", retry: true },
  1011: { message: "The runtime hit an internal error. Reconnecting…", retry: true },
  1012: { message: "The runtime is restarting. Reconnecting…", retry: true },
  4400: { message: "The runtime did not understand this client. Reload the page.", retry: false },
  4401: { message: "Your session expired. Renewing it…", retry: true },
  4403: { message: "Access to this chat was refused.", retry: false },
  4404: { message: "This chat no longer exists.", retry: false },
  4408: { message: "Connecting took too long. Retrying…", retry: true },
  4429: { message: "Too many messages at once. Slowing down…", retry: true },
};

export function closeInfo(code: number): { message: string; retry: boolean } {
  return CLOSE_CODES[code] ?? { message: `Disconnected (code ${code}). Reconnecting…`, retry: true };
}

export class BrokerError extends Error {
  constructor(readonly status: number, readonly code: string, message: string) {
    super(message);
  }
}

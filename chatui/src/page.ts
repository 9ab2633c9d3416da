// The runtime's own full page (/chat/): the element, fed by the local-mode development token.
import type { MozaiksChat } from "./element.js";

async function devToken(): Promise<string> {
  const response = await fetch("/api/mozaiks/dev/token", { method: "POST" });
  if (!response.ok) throw new Error("No development token: this page works only in local mode on 127.0.0.1");
  return (await response.json()).token;
}

let cached: { token: string; until: number } | null = null;

async function getToken(): Promise<string> {
  if (!cached || Date.now() > cached.until) cached = { token: await devToken(), until: Date.now() + 10 * 60_000 };
  return cached.token;
}

await customElements.whenDefined("mozaiks-chat");
const chat = document.querySelector("mozaiks-chat") as MozaiksChat;
const dark = window.matchMedia?.("(prefers-color-scheme: dark)").matches;
if (!chat.hasAttribute("theme")) chat.theme = dark ? "dark" : "light";
const wanted = new URLSearchParams(location.search).get("workflow");
if (wanted) chat.workflow = wanted;
chat.getToken = getToken;

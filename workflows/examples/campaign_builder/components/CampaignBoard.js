// The campaign board artifact: the plan per channel, for the user's sign-off.
// Mounted by the ChatUI through its component contract (docs/chatui.md). Plain DOM, no framework;
// every value from props is set as text, never as HTML.

const CSS = `
  .board { display: grid; gap: 10px; }
  .board h3 { margin: 0; font-size: 16px; }
  .meta { color: var(--muted); font-size: 13px; }
  .cards { display: grid; gap: 8px; grid-template-columns: repeat(auto-fill, minmax(160px, 1fr)); }
  .card { border: 1px solid var(--border); border-radius: 8px; padding: 8px; }
  .card b { text-transform: capitalize; }
  .card .budget { float: right; font-variant-numeric: tabular-nums; }
  .card p { margin: 6px 0 0; font-size: 13px; }
  .actions { display: flex; gap: 6px; flex-wrap: wrap; }
  .actions textarea { flex-basis: 100%; min-height: 48px; font: inherit; }
  button { font: inherit; padding: 4px 12px; border-radius: 6px; border: 1px solid var(--border); cursor: pointer; }
  button.approve { background: var(--accent); color: #fff; border-color: var(--accent); }
  button:disabled { opacity: 0.55; cursor: default; }
  .done { font-weight: 600; }
`;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  for (const child of children) node.append(child);
  return node;
}

export default function mount(element, { props, respond, theme }) {
  const dark = theme.mode === "dark";
  element.style.setProperty("--accent", theme.accent);
  element.style.setProperty("--border", dark ? "#30363d" : "#d0d7de");
  element.style.setProperty("--muted", dark ? "#9ba7b4" : "#57606a");
  const channels = Array.isArray(props.channels) ? props.channels : [];
  const total = channels.reduce((sum, c) => sum + (Number(c.budget_usd) || 0), 0);
  const note = el("textarea", { "aria-label": "What should change?", placeholder: "What should change? (optional)" });
  const approve = el("button", { type: "button", class: "approve" }, "Approve campaign");
  const changes = el("button", { type: "button" }, "Request changes");
  const status = el("div", { role: "status", class: "done" });
  const answer = (decision) => {
    approve.disabled = changes.disabled = note.disabled = true;
    status.textContent = decision === "approve" ? "Approved. Thanks!" : "Change request sent.";
    respond(decision === "approve" ? { decision } : { decision, note: note.value });
  };
  approve.addEventListener("click", () => answer("approve"));
  changes.addEventListener("click", () => answer("changes"));
  const board = el("div", { class: "board" },
    el("h3", {}, `Campaign: ${props.product ?? ""}`),
    el("div", { class: "meta" }, `Audience: ${props.audience ?? "?"} · Budget: $${total.toLocaleString("en-US")}` +
      (props.research_done ? " · research done" : "")),
    el("div", { class: "cards" }, ...channels.map((c) =>
      el("div", { class: "card" }, el("b", {}, String(c.name ?? "")),
         el("span", { class: "budget" }, `$${Number(c.budget_usd || 0).toLocaleString("en-US")}`),
         el("p", {}, String(c.copy ?? ""))))),
    el("div", { class: "actions" }, note, approve, changes),
    status);
  element.append(el("style", {}, CSS), board);
  approve.focus();
  return () => element.replaceChildren();
}

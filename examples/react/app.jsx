// A React host app embedding <mozaiks-chat> (docs/chatui.md, "React"). Built by chatui's build
// (`cd chatui && npm run build`) into examples/react/dist/app.js; serve this folder on an origin the
// runtime allows and open index.html?runtime=http://127.0.0.1:8000.
import { useCallback, useEffect, useRef, useState } from "react";
import { createRoot } from "react-dom/client";

const runtime = new URLSearchParams(location.search).get("runtime") ?? location.origin;

// The element is the runtime's own bundle, loaded from the runtime like any embed.
const element = import(/* the runtime's bundle, not part of this one */ `${runtime}/chat/mozaiks-chat.js`);

// Your app's sign-in goes here: the widget calls it before every broker request for the user's JWT.
// This example asks a local-mode runtime for a development token.
async function getToken() {
  const response = await fetch(`${runtime}/api/mozaiks/dev/token`, { method: "POST" });
  if (!response.ok) throw new Error(`no development token (HTTP ${response.status}): is the runtime in local mode?`);
  return (await response.json()).token;
}

/** The seed's useChatUI(): a ref for the element and openWorkflow(name, context). */
export function useChatUI(tokenSource) {
  const ref = useRef(null);
  useEffect(() => {
    void element.then(() => { if (ref.current) ref.current.getToken = tokenSource; });
  }, [tokenSource]);
  const openWorkflow = useCallback(async (name, context) => {
    await element;
    return ref.current.openWorkflow(name, context);
  }, []);
  return { ref, openWorkflow };
}

function App() {
  const { ref, openWorkflow } = useChatUI(getToken);
  const [lastRun, setLastRun] = useState(null);
  useEffect(() => {
    const chat = ref.current;
    const onComplete = (event) => setLastRun(event.detail.status);
    chat.addEventListener("mozaiks-run-complete", onComplete);
    return () => chat.removeEventListener("mozaiks-run-complete", onComplete);
  }, [ref]);
  return (
    <main>
      <h1>Acme dashboard</h1>
      <p>A React page; the assistant is the mozaiks ChatUI custom element.</p>
      <button type="button" onClick={() => openWorkflow("hello")}>Say hello</button>{" "}
      <button type="button" onClick={() => openWorkflow("campaign_builder", { brand: "Acme" })}>Plan a campaign</button>
      <p role="status">{lastRun ? `Last run: ${lastRun}` : "No run yet."}</p>
      <mozaiks-chat ref={ref} presentation="overlay" broker-url={runtime} heading="Acme assistant" />
    </main>
  );
}

createRoot(document.getElementById("root")).render(<App />);

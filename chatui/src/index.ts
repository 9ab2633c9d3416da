// The embeddable bundle: <script type="module" src="…/chat/mozaiks-chat.js"></script>
import { MozaiksChat } from "./element.js";

export { MozaiksChat };
export type { Mount, MountContext, Theme } from "./components.js";

if (!customElements.get("mozaiks-chat")) customElements.define("mozaiks-chat", MozaiksChat);

declare global {
  interface HTMLElementTagNameMap {
    "mozaiks-chat": MozaiksChat;
  }
}

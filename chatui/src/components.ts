// Loads a workflow's UI components and mounts them through the one contract (docs/chatui.md):
//   export default function mount(element, { props, respond, dismiss, theme }) -> unmount
// The module is fetched with the chat's runtime token (the runtime serves a workflow's components
// only to a token for that workflow) and imported from a blob: URL, so no token is ever in a URL.

export interface MountContext {
  props: unknown;
  respond: (value: unknown) => void;
  dismiss: () => void;
  theme: Theme;
}

export interface Theme {
  mode: "light" | "dark";
  accent: string;
}

export type Mount = (element: HTMLElement, context: MountContext) => void | (() => void);

const modules = new Map<string, Promise<Mount>>();

export function loadComponent(base: string, workflow: string, component: string, token: string): Promise<Mount> {
  const key = `${base}|${workflow}|${component}`;
  let loading = modules.get(key);
  if (!loading) {
    loading = (async () => {
      const url = `${base.replace(/\/$/, "")}/api/mozaiks/workflows/${encodeURIComponent(workflow)}` +
        `/components/${encodeURIComponent(component)}.js`;
      const response = await fetch(url, { headers: { Authorization: `Bearer ${token}` } });
      if (!response.ok) throw new Error(`component ${component} unavailable (HTTP ${response.status})`);
      const source = await response.blob();
      const blobUrl = URL.createObjectURL(new Blob([source], { type: "text/javascript" }));
      try {
        const module = await import(/* @vite-ignore */ blobUrl);
        if (typeof module.default !== "function") throw new Error(`component ${component} has no default mount()`);
        return module.default as Mount;
      } finally {
        URL.revokeObjectURL(blobUrl);
      }
    })();
    loading.catch(() => modules.delete(key));  // a failed load may be retried later
    modules.set(key, loading);
  }
  return loading;
}

/** One mounted component; unmounts itself exactly once. */
export class MountedComponent {
  private unmount: (() => void) | null = null;
  private done = false;

  constructor(readonly element: HTMLElement) {}

  async mount(load: Promise<Mount>, context: MountContext): Promise<void> {
    try {
      const mount = await load;
      if (this.done) return;
      const result = mount(this.element, context);
      this.unmount = typeof result === "function" ? result : null;
    } catch (error) {
      this.element.textContent = `Could not load this component: ${(error as Error).message}`;
      this.element.setAttribute("role", "alert");
    }
  }

  destroy(): void {
    if (this.done) return;
    this.done = true;
    try {
      this.unmount?.();
    } finally {
      this.element.replaceChildren();
    }
  }
}

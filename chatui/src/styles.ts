import { css } from "lit";

// Every colour and size is a custom property, so a host page themes the widget from outside the
// shadow root: mozaiks-chat { --mozaiks-accent: #0a7; }
export const styles = css`
  :host {
    --_bg: var(--mozaiks-bg, #ffffff);
    --_fg: var(--mozaiks-fg, #1b1f24);
    --_muted: var(--mozaiks-muted, #57606a);
    --_border: var(--mozaiks-border, #d0d7de);
    --_surface: var(--mozaiks-surface, #f6f8fa);
    --_accent: var(--mozaiks-accent, #0b5fcc);
    --_accent-fg: var(--mozaiks-accent-fg, #ffffff);
    --_user-bg: var(--mozaiks-user-bg, #ddeaff);
    --_error: var(--mozaiks-error, #b3261e);
    --_ok: var(--mozaiks-ok, #1a7f37);
    --_radius: var(--mozaiks-radius, 10px);
    --_font: var(--mozaiks-font, system-ui, -apple-system, "Segoe UI", Roboto, sans-serif);
    --_panel-width: var(--mozaiks-panel-width, 420px);
    --_panel-height: var(--mozaiks-panel-height, 640px);
    --_artifact-width: var(--mozaiks-artifact-width, 45%);
    display: block;
    font-family: var(--_font);
    font-size: 15px;
    color: var(--_fg);
  }
  :host([theme="dark"]) {
    --_bg: var(--mozaiks-bg, #0f1419);
    --_fg: var(--mozaiks-fg, #e6edf3);
    --_muted: var(--mozaiks-muted, #9ba7b4);
    --_border: var(--mozaiks-border, #30363d);
    --_surface: var(--mozaiks-surface, #161b22);
    --_accent: var(--mozaiks-accent, #4c9aff);
    --_accent-fg: var(--mozaiks-accent-fg, #0b1220);
    --_user-bg: var(--mozaiks-user-bg, #1f3a5f);
    --_error: var(--mozaiks-error, #ff8a80);
    --_ok: var(--mozaiks-ok, #56d364);
  }
  :host([presentation="inline"]) { height: 100%; }
  * { box-sizing: border-box; }
  button, input, textarea, select { font: inherit; color: inherit; }
  button {
    cursor: pointer; border: 1px solid var(--_border); background: var(--_surface); border-radius: 6px;
    padding: 4px 10px;
  }
  button.primary { background: var(--_accent); color: var(--_accent-fg); border-color: var(--_accent); }
  button.danger { border-color: var(--_error); color: var(--_error); }
  button:focus-visible, textarea:focus-visible, input:focus-visible, select:focus-visible, summary:focus-visible,
  [tabindex]:focus-visible { outline: 3px solid var(--_accent); outline-offset: 2px; }
  .sr-only { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; }

  .launcher {
    position: fixed; right: 20px; bottom: 20px; width: 56px; height: 56px; border-radius: 50%;
    background: var(--_accent); color: var(--_accent-fg); border: none; font-size: 24px;
    box-shadow: 0 4px 14px rgba(0, 0, 0, 0.25); z-index: 2147483000;
  }
  .shell {
    display: flex; flex-direction: column; background: var(--_bg); color: var(--_fg);
    border: 1px solid var(--_border); border-radius: var(--_radius); overflow: hidden; height: 100%;
  }
  .overlay {
    position: fixed; right: 20px; bottom: 88px; width: min(var(--_panel-width), calc(100vw - 40px));
    height: min(var(--_panel-height), calc(100vh - 110px)); z-index: 2147483000;
    box-shadow: 0 8px 30px rgba(0, 0, 0, 0.3);
  }
  :host([presentation="overlay"]) .shell.with-artifact { width: min(960px, calc(100vw - 40px)); }
  header {
    display: flex; align-items: center; gap: 8px; padding: 8px 10px; border-bottom: 1px solid var(--_border);
    background: var(--_surface); flex-wrap: wrap;
  }
  header h2 { font-size: 15px; margin: 0; flex: 1; min-width: 6em; }
  /* The overlay panel is narrow: one header row, the title shortened, the connection shown by its dot. */
  .overlay header { flex-wrap: nowrap; }
  .overlay header h2 { min-width: 0; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
  .overlay .conn .label { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); }
  .conn { display: inline-flex; align-items: center; gap: 5px; font-size: 12px; color: var(--_muted); }
  .dot { width: 9px; height: 9px; border-radius: 50%; background: var(--_muted); }
  .conn[data-state="connected"] .dot { background: var(--_ok); }
  .conn[data-state="reconnecting"] .dot, .conn[data-state="connecting"] .dot { background: #d29922; }
  .conn[data-state="offline"] .dot { background: var(--_error); }
  .modes { display: inline-flex; border: 1px solid var(--_border); border-radius: 6px; overflow: hidden; }
  .modes button { border: none; border-radius: 0; background: transparent; }
  .modes button[aria-pressed="true"] { background: var(--_accent); color: var(--_accent-fg); }
  .body { flex: 1; display: flex; min-height: 0; }
  .sidebar {
    width: 220px; border-right: 1px solid var(--_border); overflow: auto; padding: 8px; background: var(--_surface);
  }
  .sidebar h3 { font-size: 12px; text-transform: uppercase; color: var(--_muted); margin: 10px 0 4px; }
  .sidebar ul { list-style: none; margin: 0; padding: 0; }
  .sidebar li button { width: 100%; text-align: left; margin: 2px 0; background: var(--_bg); }
  .sidebar small { display: block; color: var(--_muted); font-size: 11px; }
  .main { flex: 1; display: flex; flex-direction: column; min-width: 0; }
  .log { flex: 1; overflow-y: auto; padding: 12px; display: flex; flex-direction: column; gap: 8px; }
  /* Off-screen entries skip layout and paint: a log of thousands stays cheap to render and scroll. */
  /* The newest entries are always laid out, so scrolling to the bottom lands on the real bottom. */
  .log > * { flex-shrink: 0; }
  .log > :nth-last-child(n + 31) { content-visibility: auto; contain-intrinsic-size: auto 44px; }
  .msg .md.deferred { white-space: pre-wrap; }
  .msg { max-width: 88%; padding: 8px 11px; border-radius: var(--_radius); background: var(--_surface);
         border: 1px solid var(--_border); overflow-wrap: anywhere; }
  .msg.user { align-self: flex-end; background: var(--_user-bg); border-color: transparent; }
  .msg .who { font-size: 12px; font-weight: 600; color: var(--_muted); margin-bottom: 2px; }
  .msg .text { white-space: pre-wrap; }
  .msg .md > :first-child { margin-top: 0; }
  .msg .md > :last-child { margin-bottom: 0; }
  .msg .queued { font-size: 11px; color: var(--_muted); }
  .msg a { color: var(--_accent); }
  .code { position: relative; }
  .code pre { background: var(--_bg); border: 1px solid var(--_border); border-radius: 6px; padding: 8px; overflow-x: auto; }
  .code .copy { position: absolute; top: 4px; right: 4px; font-size: 11px; padding: 1px 6px; }
  .tool { border: 1px solid var(--_border); border-radius: 8px; font-size: 13px; background: var(--_bg); }
  .tool summary { padding: 6px 10px; cursor: pointer; display: flex; gap: 8px; align-items: center; }
  .tool .kind { font-size: 10px; text-transform: uppercase; border: 1px solid var(--_border); border-radius: 4px;
                padding: 0 4px; color: var(--_muted); }
  .tool .name { font-family: ui-monospace, monospace; font-weight: 600; }
  .tool .status { margin-left: auto; font-size: 12px; }
  .tool .status[data-s="ok"] { color: var(--_ok); }
  .tool .status[data-s="error"], .tool .status[data-s="timeout"] { color: var(--_error); }
  .tool .details { padding: 0 10px 8px; }
  .tool pre { margin: 4px 0; white-space: pre-wrap; word-break: break-word; font-size: 12px;
              background: var(--_surface); padding: 6px; border-radius: 4px; max-height: 240px; overflow: auto; }
  .tool progress { width: 100%; }
  .divider { display: flex; align-items: center; gap: 8px; color: var(--_muted); font-size: 12px; }
  .divider::before, .divider::after { content: ""; flex: 1; border-top: 1px solid var(--_border); }
  .error { color: var(--_error); border: 1px solid var(--_error); border-radius: 8px; padding: 6px 10px; }
  .notice { align-self: center; color: var(--_muted); font-size: 13px; }
  .thinking { color: var(--_muted); font-style: italic; font-size: 13px; padding: 0 12px 4px; min-height: 1.4em; }
  .children { border: 1px solid var(--_border); border-radius: 8px; padding: 6px 10px; font-size: 13px; }
  .children-head { font-weight: 600; color: var(--_muted); }
  .children ul { list-style: none; margin: 4px 0 0; padding: 0; }
  .children li { display: flex; flex-wrap: wrap; align-items: baseline; gap: 0 8px; padding: 4px 0;
                 border-top: 1px solid var(--_border); }
  .children .journey { color: var(--_muted); }
  .children .child-status { margin-left: auto; font-size: 12px; }
  .children .child-status[data-s="completed"] { color: var(--_ok); }
  .children .child-status[data-s="failed"], .children .child-status[data-s="timed_out"] { color: var(--_error); }
  .children .summary { flex-basis: 100%; color: var(--_muted); font-size: 12px; white-space: pre-wrap; }
  button.link { border: none; background: none; padding: 0; color: var(--_accent); text-decoration: underline; }
  .back { padding: 6px 12px 0; font-size: 13px; }
  .inputreq { border: 1px dashed var(--_accent); border-radius: 8px; padding: 8px 10px; font-size: 13px; }
  .inputreq form { display: grid; gap: 6px; margin-top: 6px; max-width: 30em; }
  .inputreq form button { justify-self: start; }
  .inputreq label { display: grid; gap: 2px; }
  .inputreq input, .inputreq select { padding: 4px; border: 1px solid var(--_border); border-radius: 4px; background: var(--_bg); }
  .countdown { color: var(--_muted); font-variant-numeric: tabular-nums; }
  .inline-host { border: 1px solid var(--_border); border-radius: 8px; padding: 8px; }
  .artifact { width: var(--_artifact-width); min-width: 260px; border-left: 1px solid var(--_border);
              display: flex; flex-direction: column; background: var(--_bg); }
  .artifact header { background: var(--_surface); }
  .artifact .mount { flex: 1; overflow: auto; padding: 10px; }
  .banner { font-size: 12px; padding: 4px 10px; background: var(--_surface); color: var(--_muted); }
  .status-line { padding: 4px 12px; font-size: 12px; color: var(--_muted); border-top: 1px solid var(--_border); }
  .status-line:empty { padding: 0; border-top: none; }
  .status-line[data-alert] { color: var(--_error); }
  form.composer { display: flex; gap: 6px; padding: 8px; border-top: 1px solid var(--_border); align-items: flex-end; }
  form.composer textarea { flex: 1; resize: none; min-height: 38px; max-height: 140px; padding: 8px;
                           border: 1px solid var(--_border); border-radius: 8px; background: var(--_bg); }
  .empty { color: var(--_muted); text-align: center; margin: auto; padding: 20px; }
`;

// A gated workflow's component: served only to a runtime token for gated_report.
export default function mount(element, { props }) {
  element.textContent = `Premium report: ${props.title ?? ""}`;
  return () => element.replaceChildren();
}

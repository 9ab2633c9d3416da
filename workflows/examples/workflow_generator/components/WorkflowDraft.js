// The workflow generator's draft approval artifact: shows the draft (name, description, agents),
// lets the user edit it, then approve, approve the edit, or reject. Contract: docs/chatui.md.

const CSS = `
  form { display: grid; gap: 8px; }
  label { display: grid; gap: 2px; font-size: 13px; }
  input, textarea { font: inherit; padding: 4px 6px; border: 1px solid var(--border); border-radius: 4px;
                    background: transparent; color: inherit; }
  fieldset { border: 1px solid var(--border); border-radius: 6px; display: grid; gap: 6px; }
  .row { display: grid; grid-template-columns: 9em 1fr; gap: 6px; }
  .actions { display: flex; gap: 6px; flex-wrap: wrap; }
  button { font: inherit; padding: 4px 12px; border-radius: 6px; border: 1px solid var(--border); cursor: pointer; }
  button.approve { background: var(--accent); color: #fff; border-color: var(--accent); }
  button:disabled { opacity: 0.55; cursor: default; }
  .row input, .row textarea { font-size: 13px; resize: vertical; }
`;

// Builds a node from a tag, its properties (values are set as DOM properties, so text stays text)
// and children.
const make = (tag, properties = {}, children = []) => {
  const node = Object.assign(document.createElement(tag), properties);
  node.append(...children);
  return node;
};

export default function mount(element, { props, respond, theme }) {
  element.style.setProperty("--accent", theme.accent);
  element.style.setProperty("--border", theme.mode === "dark" ? "#30363d" : "#d0d7de");
  const name = make("input", { name: "workflow_name", ariaLabel: "Workflow name" });
  name.value = props.workflow_name ?? "";
  const description = make("textarea", { name: "description", rows: 2, ariaLabel: "Description" });
  description.value = props.description ?? "";
  const agents = (props.agents ?? []).map((agent, i) => {
    const agentName = make("input", { ariaLabel: `Agent ${i + 1} name` });
    agentName.value = agent.name ?? "";
    const role = make("textarea", { ariaLabel: `Agent ${i + 1} role`, rows: 2 });
    role.value = agent.role ?? "";
    return { agentName, role, row: make("div", { className: "row" }, [agentName, role]) };
  });
  const status = make("div", { role: "status" });
  const draft = () => ({
    workflow_name: name.value.trim(),
    description: description.value.trim(),
    agents: agents.map((a) => ({ name: a.agentName.value.trim(), role: a.role.value.trim() })),
  });
  const edited = () => JSON.stringify(draft()) !== JSON.stringify({
    workflow_name: props.workflow_name, description: props.description,
    agents: (props.agents ?? []).map((a) => ({ name: a.name, role: a.role })),
  });
  const buttons = [
    make("button", { type: "submit", className: "approve", textContent: "Approve" }),
    make("button", { type: "button", textContent: "Reject" }),
  ];
  const form = make("form", { ariaLabel: "Workflow draft" }, [
    make("label", {}, ["Name", name]), make("label", {}, ["Description", description]),
    make("fieldset", {}, [make("legend", { textContent: "Agents" }), ...agents.map((a) => a.row)]),
    make("div", { className: "actions" }, buttons), status]);
  const finish = (answer, text) => {
    for (const control of form.querySelectorAll("input, textarea, button")) control.disabled = true;
    status.textContent = text;
    respond(answer);
  };
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (edited()) finish({ decision: "edit", draft: draft() }, "Edited draft approved.");
    else finish({ decision: "approve" }, "Draft approved.");
  });
  buttons[1].addEventListener("click", () => finish({ decision: "reject" }, "Draft rejected."));
  element.append(make("style", { textContent: CSS }), form);
  return () => element.replaceChildren();
}

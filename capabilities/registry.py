"""The capability registry: which workflows users may start, under which plan, seen by whom.

A registry file (JSON or YAML, ``settings.capabilities_file``) maps capability names to workflows:

```yaml
unlisted_workflows: deny        # or "public": workflows not listed are ungated public capabilities
capabilities:
  campaigns:
    workflow: campaign_builder
    gated: true
    allowed_plans: [pro, team]  # or required_plan: pro
    visibility: public          # public | hidden (startable, not listed) | admin
    enabled: true
    display_name: Campaign builder
    description: Plan a campaign with a team of agents.
    token_reservation: 2000     # tokens a new session reserves from the budgets
```

Without a file every workflow is an ungated public capability named after it. Load errors name
the file and the field, like the workflow loader's.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"


class RegistryError(ValueError):
    """A registry file that cannot be used; the message reads ``file: field: problem``. (One
    string argument, so the error pickles intact when Ray reports a failed deployment.)"""


def _error(file: Path, field: str, message: str) -> RegistryError:
    return RegistryError(f"{file}: {field}: {message}")


class CapabilitySpec(BaseModel):
    """One entry of the file; its key is the capability's name."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    workflow: str = Field(min_length=1)
    gated: bool = False
    allowed_plans: list[str] = []
    required_plan: str | None = None
    visibility: Literal["public", "hidden", "admin"] = "public"
    enabled: bool = True
    display_name: str | None = None
    description: str | None = None
    token_reservation: int | None = Field(default=None, ge=0)  # None: settings.session_token_reservation

    @model_validator(mode="after")
    def _plans(self) -> CapabilitySpec:
        if self.allowed_plans and self.required_plan is not None:
            raise ValueError("give allowed_plans or required_plan, not both")
        if self.plans and not self.gated:
            # An ungated capability ignores plans; refusing the file beats silently opening it to all.
            raise ValueError("allowed_plans / required_plan need gated: true")
        return self

    @property
    def plans(self) -> list[str]:
        """The plans that may start it; empty on a gated capability means any subscription."""
        return self.allowed_plans or ([self.required_plan] if self.required_plan else [])


class Capability(CapabilitySpec):
    name: str


class _RegistryFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    unlisted_workflows: Literal["public", "deny"] = "deny"
    capabilities: dict[Annotated[str, StringConstraints(pattern=_NAME)], CapabilitySpec] = {}


class Registry:
    """Capabilities by workflow. Each workflow belongs to at most one capability."""

    def __init__(self, capabilities: Iterable[Capability] = (), unlisted_public: bool = True) -> None:
        self.unlisted_public = unlisted_public
        self._by_workflow = {capability.workflow: capability for capability in capabilities}

    def for_workflow(self, workflow_name: str) -> Capability | None:
        """The capability that starts this workflow; None when it may not be started at all."""
        capability = self._by_workflow.get(workflow_name)
        if capability is None and self.unlisted_public:
            return Capability(name=workflow_name, workflow=workflow_name)
        return capability


def load_registry(path: Path | None, workflow_names: Iterable[str]) -> Registry:
    """The registry in ``path`` (None: everything public), checked against the known workflows."""
    if path is None:
        return Registry()
    raw = _read(path)
    try:
        parsed = _RegistryFile.model_validate(raw)
    except ValidationError as exc:
        error = exc.errors()[0]
        raise _error(path, ".".join(map(str, error["loc"])) or "$", error["msg"]) from None
    known = set(workflow_names)
    owners: dict[str, str] = {}
    capabilities = []
    for name, spec in parsed.capabilities.items():
        capability = Capability(name=name, **spec.model_dump())
        field = f"capabilities.{name}.workflow"
        if capability.workflow not in known:
            raise _error(path, field, f"unknown workflow {capability.workflow!r}")
        if capability.workflow in owners:
            raise _error(path, field, f"workflow {capability.workflow!r} already belongs to "
                                             f"capability {owners[capability.workflow]!r}")
        owners[capability.workflow] = name
        capabilities.append(capability)
    return Registry(capabilities, unlisted_public=parsed.unlisted_workflows == "public")


def _read(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise _error(path, "$", f"cannot be read: {exc}") from None
    if path.suffix == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise _error(path, "$", f"invalid JSON at line {exc.lineno}: {exc.msg}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise _error(path, "$", f"invalid YAML{f' at line {mark.line + 1}' if mark else ''}") from None

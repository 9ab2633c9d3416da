"""Installing workflows at runtime, and finding them again: the one path both install channels
(``PUT /api/runtime/workflows/{name}`` and a generator workflow's ``ctx.install_workflow``) take.

An install is checked whole (file shapes, the loader, the capability) before the one store write
that makes it visible, so a refused install changes nothing. The store is the only registry of
installed workflows: every ingress replica and session actor looks a name up there when its own
workflows directory has no such folder, so an install is startable everywhere at once, with no
restart and no cache to invalidate. Installed workflows belong to the app that installed them.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import ValidationError

from capabilities.registry import Capability, CapabilitySpec
from mozaiks.protocol.broker_api import WorkflowInstallResponse
from mozaiks.protocol.errors import ApiError
from mozaiks.protocol.events import utc_now_iso
from mozaiks.settings import Settings
from mozaiks.store.base import InstalledWorkflow, Store
from workflows.catalog import WorkflowCatalog
from workflows.installed import InstallLimits, materialize, validate, version_of
from workflows.loader import WorkflowError, load_workflow
from workflows.model import Workflow


def install_limits(settings: Settings) -> InstallLimits:
    # All files together get the HTTP body limit, so both channels accept the same installs.
    return InstallLimits(max_files=settings.install_max_files, max_file_bytes=settings.install_max_file_bytes,
                         max_total_bytes=settings.http_max_body_bytes)


class InstalledWorkflows:
    def __init__(self, settings: Settings, catalog: WorkflowCatalog, store: Store) -> None:
        self.settings = settings
        self.catalog = catalog
        self.store = store
        self._loaded: dict[tuple[str, str], Workflow] = {}  # (name, version) -> loaded workflow

    async def find(self, app_id: str, name: str) -> tuple[Workflow, Capability | None]:
        """The workflow ``name`` as this app sees it, and its capability when it is an installed
        one (None: the registry file's). The workflows directory comes first. KeyError if neither has it."""
        try:
            return await asyncio.to_thread(self.catalog.get, name), None
        except KeyError:
            pass
        record = await self.store.get_installed_workflow(app_id, name)
        if record is None:
            raise KeyError(name)
        return await self._load(record), _capability(record)

    async def get(self, app_id: str, name: str) -> Workflow:
        return (await self.find(app_id, name))[0]

    async def all(self, app_id: str) -> list[tuple[Workflow, Capability | None]]:
        """The directory's workflows, then this app's installed ones (which never shadow them)."""
        workflows: list[tuple[Workflow, Capability | None]] = [
            (workflow, None) for workflow in (await asyncio.to_thread(self.catalog.all)).values()]
        taken = {workflow.name for workflow, _ in workflows}
        for record in await self.store.list_installed_workflows(app_id):
            if record.name not in taken:
                workflows.append((await self._load(record), _capability(record)))
        return workflows

    async def _load(self, record: InstalledWorkflow) -> Workflow:
        key = (record.name, record.version)
        if key not in self._loaded:
            folder = await asyncio.to_thread(materialize, record.name, record.files)
            # Validated at install; loading again here is what turns the folder into a Workflow.
            self._loaded[key] = await asyncio.to_thread(load_workflow, folder)
        return self._loaded[key]

    async def install(self, app_id: str, name: str, files: dict[str, str], capability: dict[str, Any] | None,
                      installed_by: str) -> tuple[InstalledWorkflow, bool]:
        """Check everything, then store it in one write. Returns the record and whether it is new."""
        if name in self.catalog.names():
            raise ApiError(409, "workflow_exists", f"Workflow {name!r} is deployed with the runtime; "
                                                   "an install cannot replace it")
        if name in self.settings.generator_workflows:
            # Generators are the operator's to name: installed code never gets to install code.
            raise ApiError(409, "workflow_exists", f"{name!r} is a generator name (settings.generator_workflows)")
        # Unless the install says otherwise, only entitled users start it (settings.installed_workflows_gated).
        spec = {"gated": self.settings.installed_workflows_gated, **(capability or {})}
        try:
            CapabilitySpec.model_validate({**spec, "workflow": name})
        except ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(map(str, ("capability", *error["loc"])))
            raise ApiError(422, "invalid_request", "The capability is invalid",
                           {"fields": [{"field": where, "message": error["msg"]}]}) from None
        try:
            await asyncio.to_thread(validate, name, files, install_limits(self.settings))
        except WorkflowError as exc:
            issues = [str(issue) for issue in exc.issues]
            raise ApiError(422, "invalid_workflow", issues[0], {"issues": issues}) from None
        previous = await self.store.get_installed_workflow(app_id, name)
        record = InstalledWorkflow(app_id=app_id, name=name, version=version_of(name, files), files=files,
                                   capability=spec, installed_by=installed_by, installed_at=utc_now_iso())
        await self.store.put_installed_workflow(record)
        return record, previous is None

    async def remove(self, app_id: str, name: str) -> bool:
        return await self.store.delete_installed_workflow(app_id, name)


def _capability(record: InstalledWorkflow) -> Capability:
    return Capability(name=record.name, workflow=record.name, **record.capability)


def summary(record: InstalledWorkflow) -> WorkflowInstallResponse:
    """What the API answers about an install: its files by name, not their content."""
    return WorkflowInstallResponse(**record.model_dump(exclude={"files"}), files=sorted(record.files))

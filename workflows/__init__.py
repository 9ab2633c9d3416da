"""The workflow format: models, loader and validation, expressions, and the tool runtime helpers."""

from workflows.expressions import ExpressionError, evaluate, parse
from workflows.loader import WorkflowError, load_pack, load_workflow, load_workflows
from workflows.model import (
    AgentConfig, ContextSource, ContextTrigger, ContextVariable, ExecutionOptions, HandoffRule,
    ModelConfig, OrchestratorConfig, PromptSection, ScriptReply, ScriptToolCall, StructuredOutputs,
    ToolSpec, UiSpec, Workflow,
)
from workflows.pack import Journey, JourneyProgress, PackGraph, PackWorkflow
from workflows.tool_context import ToolContext
from workflows.tool_loading import call_tool, import_tool, validate_arguments

__all__ = [
    "AgentConfig", "ContextSource", "ContextTrigger", "ContextVariable", "ExecutionOptions",
    "ExpressionError", "HandoffRule", "Journey", "JourneyProgress", "ModelConfig",
    "OrchestratorConfig", "PackGraph", "PackWorkflow", "PromptSection", "ScriptReply",
    "ScriptToolCall", "StructuredOutputs", "ToolContext", "ToolSpec", "UiSpec", "Workflow",
    "WorkflowError", "call_tool", "evaluate", "import_tool", "load_pack", "load_workflow",
    "load_workflows", "parse", "validate_arguments",
]

"""Capabilities: the registry of startable workflows, entitlement providers and usage gating."""

from capabilities.entitlements import Decision, EntitlementProvider, provider_factory
from capabilities.gate import Gate
from capabilities.registry import Capability, Registry, RegistryError, load_registry

__all__ = ["Capability", "Decision", "EntitlementProvider", "Gate", "Registry", "RegistryError", "load_registry",
           "provider_factory"]

"""Compatibility with tools written for the MozaiksAI runtime: its import paths, this runtime's behaviour.

Only what tool files import is provided (see docs/workflows.md, "Tools written for MozaiksAI").
"""

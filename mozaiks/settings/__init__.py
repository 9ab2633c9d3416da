"""Runtime configuration, read from the environment (``MOZAIKS_*``) and an optional ``.env`` file."""

from mozaiks.settings.model import Settings, load_settings

__all__ = ["Settings", "load_settings"]

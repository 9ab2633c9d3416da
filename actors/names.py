"""Where the runtime's named actors live: a leaf module, so that anything may look the directory
up without importing the directory (which imports the session actor)."""

DIRECTORY_NAME = "mozaiks-session-directory"
NAMESPACE = "mozaiks"

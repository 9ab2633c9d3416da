"""The ChatSession Ray actor (one per chat), its orchestration loop, tool fan-out and the directory
that activates sessions."""

"""Wire models of PROTOCOL.md: server events, client messages, broker HTTP bodies, error envelope."""

"""Session Broker: user JWT validation, runtime tokens and the broker service."""

"""WebSocket close codes (PROTOCOL §4): sent after accept, so browsers can read them."""

MALFORMED = 4400
UNAUTHENTICATED = 4401  # no token, an invalid one, or one that expired
FORBIDDEN = 4403  # path/token mismatch, origin not allowed
CHAT_NOT_FOUND = 4404
AUTH_TIMEOUT = 4408
RATE_LIMITED = 4429
FRAME_TOO_LARGE = 1009
# The chat's session died and was not back in time (settings.ws_session_recovery_s): reconnect with
# ?last_seq= to continue where this socket stopped. RFC 6455's "Service Restart".
SESSION_RESTARTING = 1012
INTERNAL_ERROR = 1011

"""WebSocket close codes (PROTOCOL §4): sent after accept, so browsers can read them."""

MALFORMED = 4400
UNAUTHENTICATED = 4401  # no token, an invalid one, or one that expired
FORBIDDEN = 4403  # path/token mismatch, origin not allowed
CHAT_NOT_FOUND = 4404
AUTH_TIMEOUT = 4408
RATE_LIMITED = 4429
FRAME_TOO_LARGE = 1009
INTERNAL_ERROR = 1011

"""Authentication failures and their mapping from PyJWT exceptions.

Messages name what failed (expired, bad signature, wrong issuer, …) and never include the token
or any key material, so they are safe to return to clients and to log.
"""

from __future__ import annotations

from jwt import exceptions as jwt_errors


class AuthError(Exception):
    """A token was refused. ``expired`` lets callers ask the client to fetch a fresh token."""

    def __init__(self, message: str, *, expired: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.expired = expired


# Ordered: subclasses before their bases (InvalidSignatureError is a DecodeError).
_REASONS: tuple[tuple[type[jwt_errors.PyJWTError], str], ...] = (
    (jwt_errors.ImmatureSignatureError, "is not yet valid"),
    (jwt_errors.InvalidIssuerError, "issuer is not accepted"),
    (jwt_errors.InvalidAudienceError, "audience is not accepted"),
    (jwt_errors.InvalidSignatureError, "signature is invalid"),
    (jwt_errors.InvalidAlgorithmError, "algorithm is not allowed"),
    (jwt_errors.InvalidKeyError, "signing key is not acceptable"),
    (jwt_errors.InvalidSubjectError, "subject (sub) must be a string"),
    (jwt_errors.InvalidJTIError, "id (jti) must be a string"),
    (jwt_errors.InvalidIssuedAtError, "issue time (iat) is invalid"),
    (jwt_errors.DecodeError, "is malformed"),
)


def auth_error_from_jwt(exc: jwt_errors.PyJWTError, what: str = "Token") -> AuthError:
    """Translate a PyJWT failure into an AuthError without reusing PyJWT's text (it may quote input)."""
    if isinstance(exc, jwt_errors.ExpiredSignatureError):
        return AuthError(f"{what} has expired", expired=True)
    if isinstance(exc, jwt_errors.MissingRequiredClaimError):
        return AuthError(f"{what} is missing the '{exc.claim}' claim")
    for exc_type, reason in _REASONS:
        if isinstance(exc, exc_type):
            return AuthError(f"{what} {reason}")
    return AuthError(f"{what} is invalid")

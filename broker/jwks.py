"""A JWKS cache with rate-limited refresh.

Keys are cached by ``kid``. A token naming an unknown ``kid`` triggers one refresh, but refreshes
are spaced at least ``min_refresh_interval_s`` apart, so a stream of tokens with random ``kid``s
cannot make us hammer the identity provider. A refresh replaces the whole key set, so a key the
provider removed after a rotation stops being accepted. When a refresh fails, the previously
fetched keys stay in use: an identity-provider outage should not log every user out.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt

from broker.errors import AuthError
from broker.keys import PublicKey, SigningKey

logger = logging.getLogger(__name__)

_LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1"}


class JwksCache:
    """Signing keys of one JWKS URL. ``get_key`` (async) and ``get_key_sync`` share one cache."""

    def __init__(self, url: str, ttl_s: float = 300.0, min_refresh_interval_s: float = 15.0,
                 timeout_s: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        parts = urlsplit(url)
        if parts.scheme != "https" and parts.hostname not in _LOOPBACK_HOSTS:
            # Whoever can alter this response can mint tokens we accept.
            logger.warning("JWKS URL %s is not HTTPS; signing keys can be tampered with in transit", url)
        self.url = url
        self.ttl_s = ttl_s
        self.min_refresh_interval_s = min_refresh_interval_s
        self.timeout_s = timeout_s
        self._clock = clock  # injectable so the refresh spacing can be tested without sleeping
        self._keys: dict[str, SigningKey] = {}
        self._fetched_at: float | None = None
        self._last_attempt: float | None = None
        self._reserve_lock = threading.Lock()
        # Callers waiting on an in-flight refresh re-check the cache instead of fetching again.
        self._async_lock = asyncio.Lock()
        self._sync_lock = threading.Lock()

    async def get_key(self, kid: str) -> SigningKey:
        if (key := self._fresh(kid)) is None:
            async with self._async_lock:
                if self._fresh(kid) is None and self._reserve_refresh():
                    try:
                        async with httpx.AsyncClient(timeout=self.timeout_s) as client:
                            response = await client.get(self.url, headers={"Accept": "application/json"})
                        self._install(response)
                    except (httpx.HTTPError, ValueError, jwt.PyJWTError) as exc:
                        self._log_failure(exc)
            key = self._cached(kid)
        return key

    def get_key_sync(self, kid: str) -> SigningKey:
        if (key := self._fresh(kid)) is None:
            with self._sync_lock:
                if self._fresh(kid) is None and self._reserve_refresh():
                    try:
                        with httpx.Client(timeout=self.timeout_s) as client:
                            response = client.get(self.url, headers={"Accept": "application/json"})
                        self._install(response)
                    except (httpx.HTTPError, ValueError, jwt.PyJWTError) as exc:
                        self._log_failure(exc)
            key = self._cached(kid)
        return key

    def _fresh(self, kid: str) -> SigningKey | None:
        stale = self._fetched_at is None or self._clock() - self._fetched_at > self.ttl_s
        return None if stale else self._keys.get(kid)

    def _cached(self, kid: str) -> SigningKey:
        """After a refresh (or a refused one): the key, possibly from an older fetch, or AuthError."""
        key = self._keys.get(kid)
        if key is None:
            if self._fetched_at is None:
                raise AuthError("Token signing keys are unavailable")
            raise AuthError("Token signing key is unknown")
        return key

    def _reserve_refresh(self) -> bool:
        """Claim the right to fetch now; False while the previous attempt is too recent."""
        with self._reserve_lock:
            now = self._clock()
            if self._last_attempt is not None and now - self._last_attempt < self.min_refresh_interval_s:
                return False
            self._last_attempt = now
            return True

    def _install(self, response: httpx.Response) -> None:
        response.raise_for_status()
        document: Any = response.json()
        entries = document.get("keys") if isinstance(document, dict) else None
        if not isinstance(entries, list):
            raise ValueError("JWKS document has no 'keys' list")
        keys: dict[str, SigningKey] = {}
        for entry in entries:
            # Only public signature keys: a symmetric ("oct") key published in a JWKS would let
            # anyone who can read the JWKS forge tokens.
            if (not isinstance(entry, dict) or not isinstance(entry.get("kid"), str)
                    or entry.get("use", "sig") != "sig" or entry.get("kty") == "oct"):
                continue
            try:
                jwk = jwt.PyJWK(entry)
            except (jwt.PyJWTError, ValueError, TypeError, KeyError):
                continue  # an unsupported or malformed key; the others remain usable
            if isinstance(jwk.key, PublicKey):
                # Keep only a *declared* alg: PyJWK infers RS256 for any RSA key without one,
                # which would wrongly refuse PS256 or RS512 tokens signed with it.
                alg = entry.get("alg")
                keys[entry["kid"]] = SigningKey(jwk.key, alg if isinstance(alg, str) else None)
        if not keys:
            raise ValueError("JWKS holds no usable public signature key with a kid")
        self._keys = keys
        self._fetched_at = self._clock()

    def _log_failure(self, exc: Exception) -> None:
        logger.warning("JWKS refresh from %s failed (%s); keeping %d previously fetched keys",
                       self.url, type(exc).__name__, len(self._keys))


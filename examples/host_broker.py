"""A host app's own Session Broker for a mozaiks runtime (Standalone mode, PROTOCOL §3).

By the time ``start_chat`` runs, the host has authenticated its user (its own login) and decided
they may run the workflow (its own billing). What remains of a broker's job is here:

1. ask the runtime to create or resume the chat, with the runtime API's service credential;
2. sign a runtime token for exactly that chat with the host's own private key;
3. give the browser the WebSocket URL and the token.

The runtime trusts the key through ``MOZAIKS_RUNTIME_TOKEN_ALGORITHM=EdDSA``,
``MOZAIKS_RUNTIME_TOKEN_ISSUER`` (= ``issuer`` here) and ``MOZAIKS_RUNTIME_TOKEN_PUBLIC_KEY`` (or
``_JWKS_URL``, a URL where the host serves ``jwks()``). See docs/standalone.md.

    python examples/host_broker.py keygen                  # host_key.pem + the runtime's settings
    python examples/host_broker.py start alice hello       # env: HOST_RUNTIME_URL, HOST_SERVICE_CREDENTIAL
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

TOKEN_TTL_S = 900  # the most the runtime accepts


class HostBroker:
    def __init__(self, runtime_url: str, service_credential: str, private_key_pem: str,
                 issuer: str = "host-app", key_id: str = "host-key-1") -> None:
        self.runtime_url = runtime_url.rstrip("/")
        self.ws_base = "ws" + self.runtime_url.removeprefix("http")  # http→ws, https→wss
        self.service_credential = service_credential
        self.key = serialization.load_pem_private_key(private_key_pem.encode(), password=None)
        self.issuer, self.key_id = issuer, key_id

    async def start_chat(self, app_id: str, user_id: str, workflow_name: str, chat_id: str | None = None,
                         context: dict[str, Any] | None = None) -> dict[str, str]:
        async with httpx.AsyncClient(timeout=30) as http:
            response = await http.post(
                f"{self.runtime_url}/api/runtime/sessions",
                headers={"Authorization": f"Bearer {self.service_credential}"},
                json={"app_id": app_id, "user_id": user_id, "workflow_name": workflow_name,
                      "chat_id": chat_id, "context": context})
        response.raise_for_status()  # the body holds the protocol's error envelope
        chat_id = response.json()["chat_id"]
        now = int(time.time())
        claims = {"iss": self.issuer, "aud": "mozaiks-runtime", "sub": user_id, "app_id": app_id,
                  "chat_id": chat_id, "workflow_name": workflow_name, "iat": now, "nbf": now,
                  "exp": now + TOKEN_TTL_S, "jti": secrets.token_urlsafe(16)}
        token = jwt.encode(claims, self.key, algorithm="EdDSA",
                           headers={"typ": "mozaiks-runtime+jwt", "kid": self.key_id})
        return {"chat_id": chat_id, "status": response.json()["status"], "runtime_token": token,
                "ws_url": f"{self.ws_base}/ws/{workflow_name}/{app_id}/{chat_id}/{user_id}",
                "expires_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(claims["exp"]))}

    def jwks(self) -> dict[str, Any]:
        """Serve this at a URL and point MOZAIKS_RUNTIME_TOKEN_JWKS_URL at it to rotate keys."""
        jwk = jwt.algorithms.OKPAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        return {"keys": [{**jwk, "kid": self.key_id, "alg": "EdDSA", "use": "sig"}]}


def main(args: list[str]) -> None:
    if args[:1] == ["keygen"]:
        key = ed25519.Ed25519PrivateKey.generate()
        path = Path("host_key.pem")
        path.write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        path.chmod(0o600)
        public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo).decode()
        print(f"MOZAIKS_RUNTIME_TOKEN_ALGORITHM=EdDSA\nMOZAIKS_RUNTIME_TOKEN_ISSUER=host-app\n"
              f"MOZAIKS_RUNTIME_TOKEN_PUBLIC_KEY='{public.strip()}'")
    elif args[:1] == ["start"] and len(args) == 3:
        broker = HostBroker(os.environ["HOST_RUNTIME_URL"], os.environ["HOST_SERVICE_CREDENTIAL"],
                            Path(os.environ.get("HOST_PRIVATE_KEY_FILE", "host_key.pem")).read_text())
        print(json.dumps(asyncio.run(broker.start_chat(os.environ.get("HOST_APP_ID", "host-app"), args[1], args[2])),
                         indent=2))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])

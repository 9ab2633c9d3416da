"""The OpenAPI document tells clients every error a route can answer, in the protocol's envelope."""

from __future__ import annotations

from typing import Any

import httpx


async def test_every_route_documents_its_errors_in_the_envelope(runtime: Any):
    async with httpx.AsyncClient(base_url=runtime.http_url) as http:
        doc = (await http.get("/api/openapi.json")).json()
    assert set(doc["components"]["schemas"]["ErrorEnvelope"]["properties"]) == {"error"}
    operations = [(path, method, op) for path, item in doc["paths"].items() for method, op in item.items()]
    assert len(operations) >= 8
    for path, method, op in operations:
        for status in ("401", "404", "422", "500"):
            schema = op["responses"][status]["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/ErrorEnvelope"}, (path, method, status)
    assert "HTTPValidationError" not in doc["components"]["schemas"]

"""The OpenAPI document the api function serves is valid and truthful: every route of the template,
every error in the one error shape, every reference resolvable, public routes without security."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from openapi_spec_validator import validate
from relay_local.template import load_template

REPO = Path(__file__).resolve().parents[2]
PUBLIC = {("get", "/v1/health"), ("get", "/v1/openapi.json"), ("post", "/v1/webhooks/optimized")}
METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    # In a process of its own, as Lambda runs it: the api function's modules (`app`, `routes`) are
    # top-level names that another function's would shadow.
    env = {**os.environ, "PYTHONPATH": str(REPO / "functions" / "api")}
    out = subprocess.run(
        [sys.executable, "-c", "import app; print(app.openapi_document())"],
        cwd=REPO / "functions" / "api",
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return json.loads(out.stdout)


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    ]


def _shape(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "{}", path)


def _resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


def test_the_document_is_valid_openapi(document: dict[str, Any]) -> None:
    validate(document)
    assert document["openapi"].startswith("3.1")


def test_every_reference_resolves(document: dict[str, Any]) -> None:
    refs = _refs(document)
    assert refs
    for ref in refs:
        _resolve(document, ref)  # KeyError names the one that does not


def _http_api_events() -> list[tuple[str, dict[str, Any]]]:
    template = load_template(REPO / "template.yaml")
    return [
        (name, event.get("Properties") or {})
        for name, resource in template["Resources"].items()
        for event in ((resource.get("Properties") or {}).get("Events") or {}).values()
        if event.get("Type") == "HttpApi"
    ]


def test_every_route_of_the_template_is_declared(document: dict[str, Any]) -> None:
    # The catch-all ($default: no Path) is not an operation: it answers what no route takes.
    routes = {
        (props["Method"].lower(), _shape(props["Path"])) for _, props in _http_api_events() if "Path" in props
    }
    declared = {(method, _shape(path)) for method, path, _ in _operations(document)}
    assert routes, "no HttpApi events in the template"
    assert routes == declared


def test_the_catch_all_goes_to_the_api_function_and_is_not_an_operation(document: dict[str, Any]) -> None:
    catch_all = [name for name, props in _http_api_events() if props.get("Path", "$default") == "$default"]
    assert catch_all == ["ApiFunction"]
    assert not [path for path in document["paths"] if "default" in path or "proxy" in path]


def test_every_request_body_refuses_unknown_fields(document: dict[str, Any]) -> None:
    """An unknown top-level field is a 422 on every route (the models derive from RequestModel)."""
    for method, path, operation in _operations(document):
        body = operation.get("requestBody")
        if not body or path == "/v1/webhooks/optimized":  # the platform's events: kept as they come
            continue
        schema = body["content"]["application/json"]["schema"]
        if "$ref" in schema:
            schema = _resolve(document, schema["$ref"])
        assert schema.get("additionalProperties") is False, (method, path)


def test_every_operation_declares_its_success_with_a_schema(document: dict[str, Any]) -> None:
    for method, path, operation in _operations(document):
        successes = [code for code in operation["responses"] if code.startswith("2")]
        assert successes, f"{method} {path} declares no success"
        for code in successes:
            schema = operation["responses"][code]["content"]["application/json"]["schema"]
            assert schema, f"{method} {path} {code} has no schema"


def test_every_error_is_in_the_error_shape(document: dict[str, Any]) -> None:
    shape = document["components"]["schemas"]["ErrorResponse"]
    assert shape["required"] == ["error"]
    body = _resolve(document, shape["properties"]["error"]["$ref"])
    assert {"code", "message", "details"} <= set(body["properties"])
    for method, path, operation in _operations(document):
        for code, answer in operation["responses"].items():
            if code.startswith("2"):
                continue
            known = {"400", "401", "404", "409", "413", "415", "422", "429", "502", "503"}
            assert code in known, (method, path, code)
            schema = answer["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/ErrorResponse"}, (method, path, code)


def test_public_routes_need_no_key_and_the_rest_need_the_bearer(document: dict[str, Any]) -> None:
    assert document["security"] == [{"bearer": []}]
    for method, path, operation in _operations(document):
        if (method, path) in PUBLIC:
            assert operation["security"] == [], (method, path)
            assert "401" not in operation["responses"] or path.startswith("/v1/webhooks/")
        else:
            assert "security" not in operation, (method, path)  # the global bearer
            assert "401" in operation["responses"], (method, path)


def test_inputs_are_declared(document: dict[str, Any]) -> None:
    def params(method: str, path: str) -> dict[tuple[str, str], Any]:
        operation = document["paths"][path][method]
        return {(p["in"], p["name"].lower()): p for p in operation.get("parameters", [])}

    for path in ("/v1/optimized/triggers", "/v1/optimove/triggers"):
        assert ("header", "idempotency-key") in params("post", path)
        assert document["paths"][path]["post"]["requestBody"]["required"]
        assert {"409", "413", "422"} <= set(document["paths"][path]["post"]["responses"])
    webhook = params("post", "/v1/webhooks/optimized")
    signature = {("header", "webhook-id"), ("header", "webhook-timestamp"), ("header", "webhook-signature")}
    assert signature <= set(webhook)
    assert {("query", "limit"), ("query", "next_token"), ("query", "status")} <= set(
        params("get", "/v1/executions")
    )
    assert ("query", "from") in params("get", "/v1/schedules")
    assert "503" in document["paths"]["/v1/executions/{execution_id}"]["delete"]["responses"]
    assert "HTTPValidationError" not in json.dumps(document)

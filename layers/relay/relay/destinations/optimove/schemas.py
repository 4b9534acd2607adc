"""Per-event-generator context schemas: a registry of JSON Schemas, checked before any call.

Sources: the file named by OPTIMOVE_SCHEMAS (JSON or YAML: ``{generator_id: schema}``, or the same
under a top-level ``generators`` key), and schemas PUT through the API (stored in DynamoDB; they
win over the file). Unknown fields are the classic typo that blanks a template, so every object
schema that lists ``properties`` is treated as ``additionalProperties: false`` unless it says
otherwise. ``jsonschema`` is imported lazily: only a request with a schema pays for it.
"""

from __future__ import annotations

import json
import threading
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

from relay.core import safe_schema
from relay.core.models import ErrorDetail
from relay.core.store.table import Table
from relay.destinations.optimove import store


class SchemaInvalid(Exception):
    """The schema itself is not a valid JSON Schema."""


class ContextRejected(Exception):
    def __init__(self, details: list[ErrorDetail]) -> None:
        super().__init__(details[0].message if details else "context does not match its schema")
        self.details = details


class SchemaMissing(Exception):
    pass


@lru_cache(maxsize=4)
def file_registry(path: str | None) -> dict[str, dict[str, Any]]:
    if not path:
        return {}
    text = Path(path).read_text(encoding="utf-8")
    if path.endswith((".yaml", ".yml")):
        import yaml

        data = yaml.safe_load(text) or {}
    else:
        data = json.loads(text)
    if isinstance(data, dict) and isinstance(data.get("generators"), dict):
        data = data["generators"]
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ValueError(f"{path}: expected a mapping of event generator id -> JSON Schema")
    for generator_id, schema in data.items():
        check_schema(schema, where=f"{path}: {generator_id}")
    return {str(k): v for k, v in data.items()}


def strict(schema: Any) -> Any:
    """The schema with ``additionalProperties: false`` wherever an object lists properties
    and does not say otherwise (recursively)."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict(v) if k != "enum" and k != "const" else v for k, v in schema.items()}
    if "properties" in out and "additionalProperties" not in out and "unevaluatedProperties" not in out:
        out["additionalProperties"] = False
    return out


def check_schema(schema: dict[str, Any], *, where: str = "schema") -> None:
    """A valid JSON Schema that the relay can evaluate safely (``relay.core.safe_schema``): every
    pattern compiles for RE2, every $ref resolves, no $ref loop."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise SchemaInvalid(f"{where}: not a valid JSON Schema: {exc.message}") from exc
    try:
        safe_schema.check(schema)
    except safe_schema.SchemaRefused as exc:
        raise SchemaInvalid(f"{where}: {exc}") from exc


@lru_cache(maxsize=256)
def _validator(schema_json: str) -> Any:
    from jsonschema import FormatChecker

    return safe_schema.validator_class()(strict(json.loads(schema_json)), format_checker=FormatChecker())


def _path(error: Any) -> str:
    path = "context"
    for part in error.absolute_path:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def explain(error: Any) -> list[ErrorDetail]:
    """One detail per offending field, naming it (an unknown or missing field by its own name)."""
    if error.validator == "additionalProperties":
        known = set((error.schema or {}).get("properties", {}))
        extra = [k for k in error.instance if k not in known] if isinstance(error.instance, dict) else []
        base = _path(error)
        return [
            ErrorDetail(
                field=f"{base}.{name}",
                message=f"unknown field {name!r}; the schema allows {sorted(known)}",
                type="unknown_field",
            )
            for name in extra
        ]
    if error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        return [
            ErrorDetail(
                field=f"{_path(error)}.{missing}",
                message=f"required field {missing!r} is missing",
                type="missing_field",
            )
        ]
    return [ErrorDetail(field=_path(error), message=error.message, type=f"schema_{error.validator}")]


class SchemaRegistry:
    """Schemas by generator id: API-stored first, then the file; cached briefly per process."""

    def __init__(self, table: Table, file_path: str | None, cache_s: float, *, require: bool = False) -> None:
        self.table = table
        self.file_path = file_path
        self.cache_s = cache_s
        self.require = require
        self._cache: dict[str, tuple[float, tuple[str, dict[str, Any], float | None] | None]] = {}
        self._lock = threading.Lock()

    def lookup(
        self, generator_id: str, *, fresh: bool = False
    ) -> tuple[str, dict[str, Any], float | None] | None:
        """(source, schema, updated_at) or None."""
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(generator_id)
        if cached and not fresh and now - cached[0] < self.cache_s:
            return cached[1]
        found: tuple[str, dict[str, Any], float | None] | None = None
        item = store.get_schema(self.table, generator_id)
        if item:
            found = ("api", json.loads(item["schema_json"]), item.get("updated_at"))
        else:
            schema = file_registry(self.file_path).get(generator_id)
            if schema is not None:
                found = ("file", schema, None)
        with self._lock:
            self._cache[generator_id] = (now, found)
        return found

    def put(self, generator_id: str, schema: dict[str, Any], now: float, caller: str) -> None:
        check_schema(schema)
        store.put_schema(self.table, generator_id, schema, now, caller)
        with self._lock:
            self._cache.pop(generator_id, None)

    def check(self, generator_id: str, context: dict[str, Any]) -> None:
        """Raise ContextRejected (or SchemaMissing when schemas are required) before any call."""
        found = self.lookup(generator_id)
        if found is None:
            if self.require:
                raise SchemaMissing(generator_id)
            return
        from referencing.exceptions import Unresolvable

        try:
            validator = _validator(json.dumps(found[1], sort_keys=True))
            errors = sorted(validator.iter_errors(context), key=lambda e: list(e.absolute_path))
        except (Unresolvable, safe_schema.SchemaRefused, RecursionError) as exc:
            # A schema stored before these were refused at registration: the caller's answer is
            # a 4xx naming the generator, not a 500 on every trigger.
            reason = str(exc) if isinstance(exc, safe_schema.SchemaRefused) else type(exc).__name__
            raise SchemaInvalid(
                f"The context schema of event generator {generator_id} cannot be evaluated ({reason}); "
                "register a corrected one"
            ) from None
        details = [d for e in errors for d in explain(e)]
        if details:
            raise ContextRejected(details)

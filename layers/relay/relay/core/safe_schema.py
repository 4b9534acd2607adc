"""JSON Schemas from callers, evaluated so that no schema can hang a request.

Python's ``re`` backtracks: ``^(a+)+$`` takes seconds on 30 characters. Every ``pattern``,
``patternProperties`` (and the ``additionalProperties`` that skips what they match) is evaluated
here with RE2 (google-re2), whose matching is linear in the input; a pattern RE2 cannot compile
(backreferences, lookaround) is refused when the schema is registered. ``check`` also refuses what
would fail on every later use: a ``$ref`` that does not resolve (the relay never fetches a schema),
``$ref``/``allOf``/... chains that loop without reading the instance (endless recursion), and
``unevaluatedProperties`` next to ``patternProperties`` (jsonschema evaluates that pair with
``re``). ``jsonschema``, ``referencing`` and ``re2`` are imported on first use.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from typing import Any


class SchemaRefused(ValueError):
    """The schema cannot be evaluated safely; the message names why (a pattern, a $ref)."""


@lru_cache(maxsize=1024)
def compile_pattern(pattern: str) -> Any:
    """The RE2 program of a JSON Schema ``pattern`` (matched with search, as the spec says)."""
    import re2

    options = re2.Options()
    options.log_errors = False
    try:
        return re2.compile(pattern, options)
    except re2.error as exc:
        reason = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else exc
        raise SchemaRefused(
            f"pattern {pattern!r} cannot be evaluated in linear time (RE2: {reason}); "
            "lookaround and backreferences are not supported"
        ) from None


def _pattern(validator: Any, pattern: str, instance: Any, schema: dict[str, Any]) -> Iterator[Any]:
    from jsonschema.exceptions import ValidationError

    if validator.is_type(instance, "string") and not compile_pattern(pattern).search(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def _pattern_properties(
    validator: Any, patterns: dict[str, Any], instance: Any, schema: Any
) -> Iterator[Any]:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in patterns.items():
        program = compile_pattern(pattern)
        for key, value in instance.items():
            if program.search(key):
                yield from validator.descend(value, subschema, path=key, schema_path=pattern)


def _additional(instance: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    properties = schema.get("properties", {})
    programs = [compile_pattern(p) for p in schema.get("patternProperties", {})]
    return [
        key
        for key in instance
        if key not in properties and not any(program.search(key) for program in programs)
    ]


def _additional_properties(
    validator: Any, allowed: Any, instance: Any, schema: dict[str, Any]
) -> Iterator[Any]:
    from jsonschema._utils import extras_msg
    from jsonschema.exceptions import ValidationError

    if not validator.is_type(instance, "object"):
        return
    extras = _additional(instance, schema)
    if validator.is_type(allowed, "object"):
        for extra in extras:
            yield from validator.descend(instance[extra], allowed, path=extra)
    elif not allowed and extras:
        if "patternProperties" in schema:
            verb = "does" if len(extras) == 1 else "do"
            joined = ", ".join(repr(each) for each in sorted(extras))
            patterns = ", ".join(repr(each) for each in sorted(schema["patternProperties"]))
            yield ValidationError(f"{joined} {verb} not match any of the regexes: {patterns}")
        else:
            error = "Additional properties are not allowed (%s %s unexpected)"
            yield ValidationError(error % extras_msg(sorted(extras, key=str)))


@lru_cache(maxsize=1)
def validator_class() -> Any:
    """Draft 2020-12 with every regular expression evaluated by RE2."""
    from jsonschema import Draft202012Validator, validators

    return validators.extend(
        Draft202012Validator,
        {
            "pattern": _pattern,
            "patternProperties": _pattern_properties,
            "additionalProperties": _additional_properties,
        },
    )


# Keywords that apply a subschema to the same instance: a cycle through them never ends.
_IN_PLACE_LISTS = ("allOf", "anyOf", "oneOf")
_IN_PLACE_ONE = ("not", "if", "then", "else")


def check(schema: Any) -> None:
    """Raise SchemaRefused for a schema that valid JSON Schema or not, the relay cannot evaluate
    safely. Call after the meta-schema check."""
    from jsonschema_specifications import REGISTRY as SPECIFICATIONS
    from referencing.exceptions import Unresolvable
    from referencing.jsonschema import DRAFT202012

    if not isinstance(schema, dict):
        return
    root = DRAFT202012.create_resource(schema)
    stack: list[tuple[Any, Any]] = [(SPECIFICATIONS.resolver_with_root(root), schema)]
    in_place: dict[int, list[Any]] = {}
    seen: set[int] = set()
    uses = {"patternProperties": False, "unevaluatedProperties": False}
    while stack:
        resolver, node = stack.pop()
        if not isinstance(node, dict) or id(node) in seen:
            continue
        seen.add(id(node))
        resolver = resolver.in_subresource(DRAFT202012.create_resource(node))
        if isinstance(node.get("pattern"), str):
            compile_pattern(node["pattern"])
        if isinstance(node.get("patternProperties"), dict):
            uses["patternProperties"] = True
            for pattern in node["patternProperties"]:
                compile_pattern(pattern)
        if "unevaluatedProperties" in node:
            uses["unevaluatedProperties"] = True
        targets = [node[k] for k in _IN_PLACE_ONE if k in node]
        targets += [s for k in _IN_PLACE_LISTS if isinstance(node.get(k), list) for s in node[k]]
        if isinstance(node.get("dependentSchemas"), dict):
            targets += list(node["dependentSchemas"].values())
        if isinstance(node.get("$ref"), str):
            try:
                resolved = resolver.lookup(node["$ref"])
            except Unresolvable as exc:
                raise SchemaRefused(
                    f"$ref {node['$ref']!r} does not resolve ({type(exc).__name__}); "
                    "refer within the schema (#/$defs/...): the relay fetches no schema"
                ) from None
            targets.append(resolved.contents)
            stack.append((resolved.resolver, resolved.contents))
        in_place[id(node)] = [t for t in targets if isinstance(t, dict)]
        stack.extend((resolver, sub) for sub in DRAFT202012.subresources_of(node))
    if all(uses.values()):
        raise SchemaRefused(
            "unevaluatedProperties cannot be combined with patternProperties here; use additionalProperties"
        )
    _refuse_cycles(in_place)


def _refuse_cycles(in_place: dict[int, list[Any]]) -> None:
    """A subschema that reaches itself through in-place keywords alone recurses without end."""
    done: set[int] = set()
    for start in in_place:
        if start in done:
            continue
        path: set[int] = set()
        stack: list[tuple[int, Iterator[Any]]] = [(start, iter(in_place.get(start, [])))]
        path.add(start)
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                path.discard(node)
                done.add(node)
                continue
            key = id(child)
            if key in path:
                raise SchemaRefused("the schema refers to itself without reading the instance ($ref loop)")
            if key not in done:
                path.add(key)
                stack.append((key, iter(in_place.get(key, []))))

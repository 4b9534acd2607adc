"""Validation errors as sentences for people: pydantic's wording rewritten in one place.

Every 422 of every route goes through :func:`sentence` (``relay.core.http.validation_error``), so a
new route or model gets the same wording without doing anything. Pydantic's own messages name
regexes (``String should match pattern '^[0-9a-fA-F]{8}-...'``), prefix a validator's words with
``Value error, `` and say ``Input should be``; the caller reads ``must be a UUID`` instead.

A constrained string says what it means with :func:`pattern` (``Annotated[str, pattern(UUID,
"a UUID")]``): the regex is never shown, the meaning is.
"""

from __future__ import annotations

from typing import Any

from pydantic import StringConstraints

UUID_PATTERN = r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$"

# regex -> what a value matching it is, e.g. "a UUID" (filled by `pattern`).
_MEANINGS: dict[str, str] = {UUID_PATTERN: "a UUID"}


def pattern(regex: str, meaning: str, **constraints: Any) -> StringConstraints:
    """A string constraint whose refusal reads ``must be <meaning>``, never the regex."""
    _MEANINGS[regex] = meaning
    return StringConstraints(pattern=regex, **constraints)


def _plural(count: Any, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


def _ctx(error: dict[str, Any], name: str) -> Any:
    return (error.get("ctx") or {}).get(name)


def _expected(error: dict[str, Any]) -> str:
    return "must be one of " + str(_ctx(error, "expected") or "").replace("' or '", "', '")


def _pattern(error: dict[str, Any]) -> str:
    return "must be " + _MEANINGS.get(str(_ctx(error, "pattern")), "in the expected format")


def _length(unit: str, units: str) -> Any:
    def sentence(error: dict[str, Any]) -> str:
        low, high = _ctx(error, "min_length"), _ctx(error, "max_length")
        if low == 1:
            return "must not be empty"
        if low is not None:
            return f"must have at least {_plural(low, unit, units)}"
        return f"must have at most {_plural(high, unit, units)}"

    return sentence


def _bound(words: str, name: str) -> Any:
    return lambda error: f"must be {words.format(_ctx(error, name))}"


DATETIME = "must be an ISO 8601 date and time, e.g. 2030-01-01T09:00:00Z"

# pydantic error type -> the sentence (after the field name) a caller reads.
_SENTENCES: dict[str, Any] = {
    "missing": "is required",
    "extra_forbidden": "is not a field of this request (check its spelling)",
    "string_pattern_mismatch": _pattern,
    "uuid_parsing": "must be a UUID",
    "uuid_type": "must be a UUID",
    "uuid_version": "must be a UUID",
    "string_type": "must be a string",
    "string_too_short": _length("character", "characters"),
    "string_too_long": _length("character", "characters"),
    "too_short": _length("item", "items"),
    "too_long": _length("item", "items"),
    "greater_than": _bound("greater than {}", "gt"),
    "greater_than_equal": _bound("{} or more", "ge"),
    "less_than": _bound("less than {}", "lt"),
    "less_than_equal": _bound("{} or less", "le"),
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "finite_number": "must be a finite number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "dict_type": "must be a JSON object",
    "model_type": "must be a JSON object",
    "model_attributes_type": "must be a JSON object",
    "list_type": "must be a JSON array",
    "literal_error": _expected,
    "enum": _expected,
    "datetime_type": DATETIME,
    "datetime_parsing": DATETIME,
    "datetime_from_date_parsing": DATETIME,
    "json_type": "must be JSON",
}

# Wording pydantic uses in messages of types not listed above.
_REWORDED = (("Input should be", "must be"), ("Input should", "must"), ("String should", "must"))
_PREFIXES = ("Value error, ", "Assertion failed, ")


def sentence(error: dict[str, Any]) -> str:
    """What is wrong with the field of one pydantic error (``ValidationError.errors()`` entry),
    as the end of a sentence that starts with the field's name: ``must be a UUID``."""
    known = _SENTENCES.get(str(error.get("type")))
    if callable(known):
        return known(error)
    if known:
        return known
    message = str(error.get("msg") or "is not valid")
    for prefix in _PREFIXES:
        if message.startswith(prefix):
            return message[len(prefix) :]
    for pydantic_words, ours in _REWORDED:
        if message.startswith(pydantic_words):
            return ours + message[len(pydantic_words) :]
    return message

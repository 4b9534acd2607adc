"""What ``make dev`` shows of the functions' output: one short line per event in the terminal, every
line in full in a file.

The functions print what they print in Lambda: Powertools Logger's JSON records (~400 characters,
most of them the same on every line), EMF metric documents and, now and then, a traceback. In the
terminal that is unreadable, so each record becomes ``09:00:01 dispatch   3f2a9c01… batch sent
profiles=50 chunks=1 group=cc6cdf44…``: the time, the function that printed it, the execution it is
about (when it names one) and what happened, with the record's own fields shortened. Metric
documents (the reconciler's ``Repairs: 0`` every run, every worker's counters) go only to the file.
The file (``.venv/relay-local.log`` by default, named when the stack starts) keeps every line as
JSON, the function that printed it first: ``{"function": "dispatch", "level": "INFO", ...}``; a line
that is not a JSON object is kept as ``{"function": ..., "stream": ..., "text": ...}``.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import time
from pathlib import Path
from typing import Any, TextIO

FUNCTION_WIDTH = 10
"""Wide enough for the template's function names (``reconciler``, ``scheduler``, ``webhooks``)."""
MAX_LINE = 200
"""A terminal line is cut here: the file has the rest."""
MAX_VALUE = 40

# Keys every Powertools record carries (or the Lambda context adds): the same on every line, or
# shown otherwise (level, message, execution), so they are not repeated as details.
_STANDARD_KEYS = frozenset(
    {
        "level",
        "location",
        "message",
        "timestamp",
        "service",
        "cold_start",
        "function_name",
        "function_memory_size",
        "function_arn",
        "function_request_id",
        "function_version",
        "xray_trace_id",
        "sampling_rate",
        "correlation_id",
        "execution_id",
        "exception",
        "exception_name",
        "stack_trace",
        "destination",
    }
)
_SHORT_NAMES = {"group_id": "group", "batch_id": "batch", "batch_uuid": "batch_uuid"}
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_LEVEL_TAGS = {"WARNING": "WARN ", "ERROR": "ERROR ", "CRITICAL": "CRITICAL "}
# Python's warnings module prints "path:line: SomeWarning: message" and then the source line,
# indented (Powertools Metrics warns on every flush with no metric: every scheduler run).
_PY_WARNING = re.compile(r"^\S.*?:\d+: (?P<message>\w*Warning: .*)$")
_FILE_ONLY_WARNINGS = ("No application metrics to publish",)
"""Warnings that say nothing to a person at the terminal: Powertools Metrics flushing an
invocation that counted nothing (every scheduler and reconciler run, most API requests)."""


def short_id(value: Any) -> str:
    """An id as a person compares ids at a glance: its first 8 characters."""
    text = str(value)
    return text[:8] + "…" if len(text) > 9 else text


def _short_value(value: Any) -> str:
    if isinstance(value, str) and _UUID.match(value):
        return short_id(value)
    if isinstance(value, dict | list):
        text = json.dumps(value, separators=(",", ":"), default=str)
    else:
        text = str(value)
    text = text.replace("\n", " ")
    return text if len(text) <= MAX_VALUE else text[: MAX_VALUE - 1] + "…"


def is_metric_document(record: dict[str, Any]) -> bool:
    """An EMF document (Powertools Metrics' flush): counters for CloudWatch, not an event."""
    return isinstance(record.get("_aws"), dict)


def parse_record(line: str) -> dict[str, Any] | None:
    """The JSON object a line holds, or None when it holds none."""
    text = line.strip()
    if not text.startswith("{"):
        return None
    try:
        record = json.loads(text)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def terminal_line(function: str, line: str, at: float) -> str | None:
    """The short line shown for one line a function printed at ``at`` (epoch seconds), or None
    when it belongs only in the file (metric documents, blank lines)."""
    if not line.strip():
        return None
    clock = time.strftime("%H:%M:%S", time.localtime(at))
    record = parse_record(line)
    if record is None:  # a print, a traceback line: shown as it is
        return _cut(f"{clock} {function:<{FUNCTION_WIDTH}} {line.rstrip()}")
    if is_metric_document(record):
        return None
    execution = record.get("execution_id")
    what = [_LEVEL_TAGS.get(str(record.get("level", "")).upper(), "") + str(record.get("message", ""))]
    if record.get("destination"):
        what.append(f"[{record['destination']}]")
    for key, value in record.items():
        if key in _STANDARD_KEYS or value is None or value == "":
            continue
        what.append(f"{_SHORT_NAMES.get(key, key)}={_short_value(value)}")
    if record.get("exception_name"):  # the traceback's last line: "ValueError: what went wrong"
        what.append(f"({_last_line(record.get('exception')) or record['exception_name']})")
    column = short_id(execution) if execution else ""
    return _cut(f"{clock} {function:<{FUNCTION_WIDTH}} {column:<9} {' '.join(what)}")


def _last_line(text: Any) -> str:
    lines = [line for line in str(text or "").splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def _cut(text: str) -> str:
    return text if len(text) <= MAX_LINE else text[: MAX_LINE - 1] + "…"


def file_line(function: str, stream: str, line: str) -> str:
    """The line as kept in the file: JSON, attributed to the function that printed it."""
    record = parse_record(line)
    if record is not None:
        return json.dumps({"function": function, **record}, separators=(",", ":"), default=str)
    return json.dumps({"function": function, "stream": stream, "text": line.rstrip("\n")})


class LocalFormatter(logging.Formatter):
    """The local stack's own log lines in the same columns: ``09:00:01 gateway  ...`` (the part
    of the stack that wrote it in place of a function)."""

    def format(self, record: logging.LogRecord) -> str:
        clock = time.strftime("%H:%M:%S", time.localtime(record.created))
        part = record.name.rsplit(".", 1)[-1] if record.name.startswith("relay_local.") else "local"
        tag = _LEVEL_TAGS.get(record.levelname, "")
        text = _cut(f"{clock} {part:<{FUNCTION_WIDTH}} {'':<9} {tag}{record.getMessage()}")
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


class DevLog:
    """The sink ``make dev`` gives the local stack's functions (``lambdas.set_output_sink``)."""

    def __init__(self, path: Path, terminal: TextIO | None = None) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("w", encoding="utf-8")  # one run per file: state does not outlive a run either
        self._terminal = terminal
        self._lock = threading.Lock()
        self._warned: set[tuple[str, str]] = set()
        self._after_warning: set[tuple[str, str]] = set()

    def __call__(self, function: str, stream: str, text: str) -> None:
        now = time.time()
        terminal = self._terminal or sys.stdout
        with self._lock:
            for line in text.splitlines():
                if not line.strip():
                    continue
                self._file.write(file_line(function, stream, line) + "\n")
                shown = self._python_warning(function, stream, line, now)
                if shown is None:
                    shown = terminal_line(function, line, now)
                if shown:
                    terminal.write(shown + "\n")
            self._file.flush()
            terminal.flush()

    def _python_warning(self, function: str, stream: str, line: str, at: float) -> str | None:
        """A Python warning is shown once per function and message, without its source line:
        "" for a line to leave out, None for a line that is not part of a warning."""
        origin = (function, stream)
        if origin in self._after_warning:
            self._after_warning.discard(origin)
            if line[:1].isspace():
                return ""
        match = _PY_WARNING.match(line)
        if match is None:
            return None
        self._after_warning.add(origin)
        key = (function, match["message"])
        if key in self._warned or any(quiet in line for quiet in _FILE_ONLY_WARNINGS):
            return ""
        self._warned.add(key)
        clock = time.strftime("%H:%M:%S", time.localtime(at))
        return _cut(f"{clock} {function:<{FUNCTION_WIDTH}} {'':<9} WARN python: {match['message']}")

    def close(self) -> None:
        with self._lock:
            self._file.close()

"""Named crash points between side effects, armed only by tests and chaos runs.

``failpoint("accept.after_arm")`` sits between two side effects (a DynamoDB write, an SQS send,
an upstream call). It does nothing unless ``RELAY_FAILPOINTS`` names it; then it raises, sleeps
or ends the process there, so a test can show that the work still completes (or ends visibly)
after a crash at exactly that point. The idea is etcd's gofail and TiKV's fail-rs; no maintained
Python library does this, so it is written here, small on purpose.

``RELAY_FAILPOINTS`` holds entries separated by ``;`` or ``,``::

    accept.after_arm=raise            raise FailpointFired there (the invocation fails)
    dispatch.after_send=raise@0.05    ... with probability 0.05 each time it is reached
    deliver.before_forward=sleep:20   sleep 20 s there (to force a Lambda timeout)
    dispatch.after_claim=exit         end the process at once, as a killed Lambda instance
    *=raise@0.02                      every failpoint (a named entry wins over ``*``)

Off, a failpoint costs one dictionary lookup on an empty dict. Settings are read once per
process, as Lambda reads its environment; :func:`reset` reads them again (tests).
"""

from __future__ import annotations

import logging
import os
import random
import time
from dataclasses import dataclass

from aws_lambda_powertools import Logger

ENV = "RELAY_FAILPOINTS"
ACTIONS = ("raise", "sleep", "exit")

logger = Logger(child=True)


class FailpointFired(RuntimeError):
    """Raised by a failpoint armed with ``raise``: stands for a crash at that point."""


class FailpointSpecError(ValueError):
    """``RELAY_FAILPOINTS`` does not parse; the message names the entry."""


@dataclass(frozen=True)
class Action:
    kind: str  # raise | sleep | exit
    probability: float = 1.0
    seconds: float = 0.0


def parse(spec: str) -> dict[str, Action]:
    """``name=action[@probability]`` entries; see the module's docstring."""
    armed: dict[str, Action] = {}
    for entry in spec.replace(",", ";").split(";"):
        entry = entry.strip()
        if not entry:
            continue
        name, sep, text = entry.partition("=")
        name, text = name.strip(), text.strip()
        if not sep or not name or not text:
            raise FailpointSpecError(f"{ENV}: {entry!r} is not name=action")
        action_text, _, probability_text = text.partition("@")
        kind, _, argument = action_text.partition(":")
        if kind not in ACTIONS:
            raise FailpointSpecError(f"{ENV}: {entry!r}: the action must be one of {', '.join(ACTIONS)}")
        try:
            probability = float(probability_text) if probability_text else 1.0
            seconds = float(argument) if kind == "sleep" else 0.0
        except ValueError:
            raise FailpointSpecError(f"{ENV}: {entry!r}: a number does not parse") from None
        if not 0.0 <= probability <= 1.0 or seconds < 0:
            raise FailpointSpecError(f"{ENV}: {entry!r}: probability is 0..1, sleep seconds >= 0")
        if kind == "sleep" and not argument:
            raise FailpointSpecError(f"{ENV}: {entry!r}: sleep needs seconds (sleep:20)")
        armed[name] = Action(kind, probability, seconds)
    return armed


_armed: dict[str, Action] = {}


def reset() -> None:
    """Read ``RELAY_FAILPOINTS`` again (the environment changed)."""
    global _armed
    _armed = parse(os.environ.get(ENV, ""))


def failpoint(name: str) -> None:
    """A crash point named ``name``: nothing happens unless ``RELAY_FAILPOINTS`` arms it."""
    if not _armed:
        return
    action = _armed.get(name) or _armed.get("*")
    if action is None or (action.probability < 1.0 and random.random() >= action.probability):
        return
    logger.warning("failpoint %s fired: %s", name, action.kind, extra={"failpoint": name})
    if action.kind == "sleep":
        time.sleep(action.seconds)
    elif action.kind == "exit":
        logging.shutdown()
        os._exit(137)
    else:
        raise FailpointFired(f"failpoint {name} fired")


reset()

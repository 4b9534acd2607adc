"""Load Lambda handlers from their code directories and invoke them with a Lambda-like context."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from relay_local.template import DEFAULT_ACCOUNT_ID

Handler = Callable[[Any, Any], Any]

_import_lock = threading.Lock()


def _module_name(code_dir: Path, module_path: str) -> str:
    digest = hashlib.sha1(str(code_dir).encode(), usedforsecurity=False).hexdigest()[:10]
    safe = "".join(ch if ch.isalnum() else "_" for ch in f"{code_dir.name}_{module_path}")
    return f"_relay_local_fn_{safe}_{digest}"


def load_handler(code_uri_dir: str | Path, handler: str, instance: int = 0) -> Handler:
    """Import ``handler`` ("app.lambda_handler", "pkg/mod.fn") from ``code_uri_dir``.

    The module is imported under a unique name so several functions can each have an ``app.py``.
    While it is imported the code directory is first on ``sys.path`` (as in Lambda), so sibling
    modules of the handler can be imported. Each ``instance`` is a separate copy, sibling modules
    included, like separate Lambda containers: a Powertools resolver or batch processor holds
    per-invocation state, so one copy must never serve two invocations at once.
    """
    code_dir = Path(code_uri_dir).resolve()
    module_path, _, function_name = handler.rpartition(".")
    if not module_path or not function_name:
        raise ValueError(f"handler {handler!r} is not of the form module.function")
    file = code_dir / (module_path.replace(".", "/") + ".py")
    if not file.is_file():
        raise FileNotFoundError(f"handler module {file} not found")
    name = _module_name(code_dir, module_path) + (f"_{instance}" if instance else "")
    with _import_lock:
        module = sys.modules.get(name)
        if module is None:
            spec = importlib.util.spec_from_file_location(name, file)
            if spec is None or spec.loader is None:
                raise ImportError(f"cannot import {file}")
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            sys.path.insert(0, str(code_dir))
            try:
                spec.loader.exec_module(module)
            except BaseException:
                del sys.modules[name]
                raise
            finally:
                with contextlib.suppress(ValueError):
                    sys.path.remove(str(code_dir))
                _forget_siblings(code_dir)
    fn = getattr(module, function_name, None)
    if not callable(fn):
        raise AttributeError(f"{file} has no callable {function_name}")
    return fn


def _forget_siblings(code_dir: Path) -> None:
    """Drop the handler's sibling modules from sys.modules so the next copy imports its own
    (the copy just loaded keeps its references), and so other functions never see them."""
    for mod_name, mod in list(sys.modules.items()):
        mod_file = getattr(mod, "__file__", None)
        if (
            mod_file
            and not mod_name.startswith("_relay_local_fn_")
            and Path(mod_file).is_relative_to(code_dir)
        ):
            del sys.modules[mod_name]


class LambdaContext:
    """The parts of Lambda's context object that handlers (and Powertools) use."""

    def __init__(
        self,
        function_name: str,
        timeout_s: float = 3,
        memory_limit_in_mb: int = 128,
        region: str = "us-east-1",
        account_id: str = DEFAULT_ACCOUNT_ID,
        function_version: str = "$LATEST",
    ) -> None:
        self.function_name = function_name
        self.function_version = function_version
        self.invoked_function_arn = f"arn:aws:lambda:{region}:{account_id}:function:{function_name}"
        self.memory_limit_in_mb = int(memory_limit_in_mb)
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        day = time.strftime("%Y/%m/%d", time.gmtime())
        self.log_stream_name = f"{day}/[{function_version}]{uuid.uuid4().hex}"
        self.identity = None
        self.client_context = None
        self._deadline = time.monotonic() + float(timeout_s)

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


@dataclass
class LocalFunction:
    """A function of the template, loaded and ready to invoke."""

    logical_id: str
    code_uri: Path
    handler_name: str
    timeout_s: float = 3
    memory_mb: int = 128
    region: str = "us-east-1"
    events: Mapping[str, Any] = field(default_factory=dict)
    max_concurrency: int = 16
    _idle: list[Handler] = field(default_factory=list, repr=False)
    _instances: int = field(default=0, repr=False)
    _lock: threading.Condition = field(default_factory=threading.Condition, repr=False)

    @property
    def handler(self) -> Handler:
        """The first container's handler (loads it on first use)."""
        with self._lock:
            if self._instances == 0:
                self._idle.append(load_handler(self.code_uri, self.handler_name, 0))
                self._instances = 1
            return self._idle[0] if self._idle else load_handler(self.code_uri, self.handler_name, 0)

    def context(self) -> LambdaContext:
        """A fresh context (new request id, full timeout) for one invocation."""
        return LambdaContext(self.logical_id, self.timeout_s, self.memory_mb, self.region)

    def invoke(self, event: Any) -> Any:
        """Run on an idle container, starting a new one (a cold start) when all are busy."""
        handler = self._acquire()
        try:
            return handler(event, self.context())
        finally:
            with self._lock:
                self._idle.append(handler)
                self._lock.notify()

    def _acquire(self) -> Handler:
        with self._lock:
            while not self._idle and self._instances >= self.max_concurrency:
                self._lock.wait()
            if self._idle:
                return self._idle.pop()
            instance = self._instances
            self._instances += 1
        return load_handler(self.code_uri, self.handler_name, instance)


def functions_from_template(
    template: Mapping[str, Any], template_dir: str | Path, region: str = "us-east-1"
) -> dict[str, LocalFunction]:
    """Every ``AWS::Serverless::Function`` with a local CodeUri (handlers are loaded lazily)."""
    globals_fn = (template.get("Globals") or {}).get("Function") or {}
    out: dict[str, LocalFunction] = {}
    for logical_id, resource in (template.get("Resources") or {}).items():
        if not isinstance(resource, dict) or resource.get("Type") != "AWS::Serverless::Function":
            continue
        props = {**globals_fn, **(resource.get("Properties") or {})}
        code_uri = props.get("CodeUri")
        if not isinstance(code_uri, str) or "://" in code_uri:
            continue
        out[logical_id] = LocalFunction(
            logical_id=logical_id,
            code_uri=(Path(template_dir) / code_uri).resolve(),
            handler_name=str(props.get("Handler", "app.lambda_handler")),
            timeout_s=float(props.get("Timeout", 3)),
            memory_mb=int(props.get("MemorySize", 128)),
            region=region,
            events=props.get("Events") or {},
        )
    return out

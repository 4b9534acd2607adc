"""Lambda functions of the template, run as Lambda runs them: one OS process per instance.

Each function has a small pool of instances. An instance is a process of its own (started with
``multiprocessing``'s *spawn*, so it shares no module state with the stack or other instances)
that imports the handler once (a cold start) and then serves one invocation at a time, for as
long as it stays healthy (warm). Events and results travel over a ``multiprocessing.Pipe``, never
stdout: an instance's stdout and stderr (Powertools prints its logs and metrics as JSON lines
there) are pipes the stack copies line by line to its own ``sys.stdout`` / ``sys.stderr`` - the
test's captured output under pytest - or to the sink set with :func:`set_output_sink` (``make dev``:
a short line per event in the terminal, the JSON in a file), and an invocation returns once what
it printed has been copied.

Like Lambda:

* an instance is started on demand when every live one is busy, up to ``max_concurrency`` (the
  template's ``ReservedConcurrentExecutions``, else the stack's setting); beyond that an
  invocation waits for an instance to come free;
* an invocation that outlives the function's ``Timeout`` has its instance killed and fails
  (:class:`InvocationTimeout`); an instance that dies mid-invocation (a crash, ``SIGKILL``)
  fails that invocation (:class:`InstanceCrashed`) and is replaced by a fresh one next time;
* a handler's exception fails the invocation (:class:`InvocationError`, with the error type,
  message and traceback) and the instance stays warm;
* a changed environment is a configuration update (:meth:`LocalFunction.update_environment`):
  idle instances are retired at once, busy ones when their invocation ends, and later
  invocations get instances started with the new environment.
"""

from __future__ import annotations

import collections
import contextlib
import importlib
import json
import logging
import multiprocessing
import os
import re
import signal
import sys
import threading
import time
import traceback
import types
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from relay_local.template import DEFAULT_ACCOUNT_ID

log = logging.getLogger(__name__)

Handler = Callable[[Any, Any], Any]

DEFAULT_MAX_CONCURRENCY = 4
"""Instances per function when the template reserves no concurrency and the stack sets none."""
INIT_TIMEOUT_S = 60.0
"""How long an instance may take to import its handler (Lambda allows 10 s; a loaded laptop
importing boto3, pydantic and Powertools for the first time needs more)."""

_LOCAL_DIR = Path(__file__).resolve().parents[1]
_spawn_lock = threading.Lock()
_MARK = b"\x00relay-local:flushed\n"
"""Written by an instance to its stdout and stderr after each invocation: all before it is out."""
OUTPUT_WAIT_S = 5.0

# Failpoints that fired in any instance (counted from their log lines, which name them).
_FAILPOINT_FIELD = re.compile(r'"failpoint":\s*"([^"]+)"')
_fired: collections.Counter[str] = collections.Counter()
_fired_lock = threading.Lock()


# Metrics the instances printed as CloudWatch EMF lines (unless POWERTOOLS_METRICS_DISABLED),
# summed by metric name: what CloudWatch would have counted.
_metrics: collections.Counter[str] = collections.Counter()


def failpoints_fired() -> collections.Counter[str]:
    """How often each failpoint fired in the instances of this process's stack, by name."""
    with _fired_lock:
        return collections.Counter(_fired)


OutputSink = Callable[[str, str, str], None]
"""Takes what an instance printed: (function, "stdout" or "stderr", whole lines of text)."""
_output_sink: OutputSink | None = None


def set_output_sink(sink: OutputSink | None) -> None:
    """Send the instances' output to ``sink`` (called with the function's name - its code folder,
    e.g. ``dispatch`` - the stream and whole lines) instead of this process's stdout/stderr;
    None restores the default."""
    global _output_sink
    _output_sink = sink


def metrics_emitted() -> collections.Counter[str]:
    """Every EMF metric the instances of this process's stack printed, summed by name (metrics
    must be on: ``POWERTOOLS_METRICS_DISABLED`` unset or false)."""
    with _fired_lock:
        return collections.Counter(_metrics)


def _count_emf(text: str) -> None:
    found: collections.Counter[str] = collections.Counter()
    for line in text.splitlines():
        if '"_aws"' not in line:
            continue
        try:
            record = json.loads(line)
            definitions = record["_aws"]["CloudWatchMetrics"]
        except (ValueError, KeyError, TypeError):
            continue
        for definition in definitions if isinstance(definitions, list) else ():
            for metric in definition.get("Metrics") or ():
                name = metric.get("Name") if isinstance(metric, dict) else None
                value = record.get(name) if name else None
                values = value if isinstance(value, list) else [value]
                found[name] += sum(v for v in values if isinstance(v, int | float))
    if found:
        with _fired_lock:
            _metrics.update(found)


def load_handler(code_uri_dir: str | Path, handler: str) -> Handler:
    """Import ``handler`` ("app.lambda_handler", "pkg/mod.fn") from ``code_uri_dir`` as Lambda does:
    the code directory goes first on ``sys.path`` and the module is imported under its own name.

    One function per process: a second function's ``app`` would find the first one's module.
    The local stack calls this in each instance process; benchmarks call it to run a handler
    in-process.
    """
    code_dir = Path(code_uri_dir).resolve()
    module_path, _, function_name = handler.rpartition(".")
    if not module_path or not function_name:
        raise ValueError(f"handler {handler!r} is not of the form module.function")
    file = code_dir / (module_path.replace(".", "/") + ".py")
    if not file.is_file():
        raise FileNotFoundError(f"handler module {file} not found")
    if str(code_dir) in sys.path:
        sys.path.remove(str(code_dir))
    sys.path.insert(0, str(code_dir))
    module = importlib.import_module(module_path.replace("/", "."))
    fn = getattr(module, function_name, None)
    if not callable(fn):
        raise AttributeError(f"{file} has no callable {function_name}")
    return fn


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
        aws_request_id: str | None = None,
        deadline: float | None = None,
    ) -> None:
        self.function_name = function_name
        self.function_version = function_version
        self.invoked_function_arn = f"arn:aws:lambda:{region}:{account_id}:function:{function_name}"
        self.memory_limit_in_mb = int(memory_limit_in_mb)
        self.aws_request_id = aws_request_id or str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        day = time.strftime("%Y/%m/%d", time.gmtime())
        self.log_stream_name = f"{day}/[{function_version}]{uuid.uuid4().hex}"
        self.identity = None
        self.client_context = None
        # time.monotonic() is CLOCK_MONOTONIC, one clock for every process of the machine: the
        # stack passes the deadline it will enforce, and the instance counts down to it.
        self._deadline = deadline if deadline is not None else time.monotonic() + float(timeout_s)

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


# -- errors ---------------------------------------------------------------------------------------


class InvocationError(Exception):
    """An invocation failed: the handler raised, timed out, or its instance died.

    ``error_type`` / ``error_message`` / ``stack_trace`` are what Lambda reports (``errorType``,
    ``errorMessage``, ``stackTrace``); the instance's traceback is part of ``str()``."""

    def __init__(
        self,
        function_name: str,
        error_type: str,
        error_message: str,
        stack_trace: str = "",
        request_id: str = "",
    ) -> None:
        self.function_name = function_name
        self.error_type = error_type
        self.error_message = error_message
        self.stack_trace = stack_trace
        self.request_id = request_id
        text = f"{function_name} (RequestId {request_id or '-'}) failed: {error_type}: {error_message}"
        if stack_trace:
            text += "\n--- in the function's instance ---\n" + stack_trace.rstrip()
        super().__init__(text)

    @property
    def payload(self) -> dict[str, Any]:
        """The error as Lambda returns it to a synchronous caller."""
        return {
            "errorType": self.error_type,
            "errorMessage": self.error_message,
            "stackTrace": self.stack_trace.splitlines(),
        }


class InvocationTimeout(InvocationError):
    """The invocation outlived the function's Timeout; its instance was killed."""


class InstanceCrashed(InvocationError):
    """The instance serving the invocation died (killed, crashed, exited)."""


def _describe(exc: BaseException) -> tuple[str, str, str]:
    return type(exc).__name__, str(exc), "".join(traceback.format_exception(exc))


# -- the instance process -------------------------------------------------------------------------


@dataclass(frozen=True)
class _InstanceSpec:
    function_name: str
    code_uri: str
    handler: str
    layers: tuple[str, ...]
    environment: dict[str, str]
    timeout_s: float
    memory_mb: int
    region: str


def _mark_output() -> None:
    for stream, fd in ((sys.stdout, 1), (sys.stderr, 2)):
        with contextlib.suppress(Exception):
            stream.flush()
        os.write(fd, _MARK)


def _instance_main(conn: Connection, out: Connection, err: Connection, spec: _InstanceSpec) -> None:
    """Entry point of an instance process: import the handler, then serve invocations."""
    # Ctrl-C in a terminal reaches the whole process group: the stack stops its instances itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for pipe, fd in ((out, 1), (err, 2)):
        os.dup2(pipe.fileno(), fd)
        pipe.close()
    os.environ.clear()
    os.environ.update(spec.environment)
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(line_buffering=True)  # logs show up as they are written, even in a pipe
    # As in Lambda: the function's code first, then its layers (/opt/python), then the runtime.
    front = [spec.code_uri, *spec.layers, str(_LOCAL_DIR)]
    sys.path[:] = front + [entry for entry in sys.path if entry not in front]
    try:
        handler = load_handler(spec.code_uri, spec.handler)
    except BaseException as exc:
        conn.send(("init_error", _describe(exc)))
        return
    _mark_output()
    conn.send(("ready", os.getpid()))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return  # retired (or the stack is gone)
        if message is None:
            return
        event, request_id, deadline = message
        context = LambdaContext(
            spec.function_name,
            spec.timeout_s,
            spec.memory_mb,
            spec.region,
            aws_request_id=request_id,
            deadline=deadline,
        )
        fatal = False
        try:
            reply: tuple[str, Any] = ("ok", handler(event, context))
        except BaseException as exc:  # SystemExit too: Lambda reports it, then restarts the runtime
            reply = ("error", _describe(exc))
            fatal = not isinstance(exc, Exception)
        _mark_output()
        try:
            conn.send(reply)
        except (EOFError, OSError):
            return
        except Exception as exc:  # a result that cannot be pickled (Lambda: not JSON serialisable)
            conn.send(("error", _describe(exc)))
        if fatal:
            return


class _Pump(threading.Thread):
    """Copies an instance's stdout or stderr pipe to this process's ``sys.stdout`` / ``sys.stderr``
    (looked up on every write, so pytest's capture of the test running now gets it)."""

    def __init__(self, reader: Connection, stream: str, name: str, function: str = "") -> None:
        super().__init__(name=f"{name}:{stream}", daemon=True)
        self.reader = reader
        self.stream = stream
        self.function = function or name
        self.marks = 0
        self.closed = False
        self._seen = threading.Condition()

    def run(self) -> None:
        fd = self.reader.fileno()
        pending = b""
        try:
            while chunk := os.read(fd, 65536):
                pending += chunk
                while (at := pending.find(_MARK)) >= 0:
                    self._write(pending[:at])
                    pending = pending[at + len(_MARK) :]
                    with self._seen:
                        self.marks += 1
                        self._seen.notify_all()
                if (end := pending.rfind(b"\n")) >= 0:
                    self._write(pending[: end + 1])
                    pending = pending[end + 1 :]
        except OSError:
            pass
        finally:
            self._write(pending)
            with contextlib.suppress(OSError):
                self.reader.close()
            with self._seen:
                self.closed = True
                self._seen.notify_all()

    def _write(self, data: bytes) -> None:
        if not data:
            return
        if b'"failpoint"' in data:
            names = _FAILPOINT_FIELD.findall(data.decode("utf-8", "replace"))
            with _fired_lock:
                _fired.update(names)
        if b'"_aws"' in data:
            _count_emf(data.decode("utf-8", "replace"))
        sink = _output_sink
        with contextlib.suppress(Exception):  # a closed or swapped stream must not kill the pump
            if sink is not None:
                sink(self.function, self.stream, data.decode("utf-8", "replace"))
                return
            stream = getattr(sys, self.stream)
            stream.write(data.decode("utf-8", "replace"))
            stream.flush()

    def wait_for(self, marks: int, timeout: float = OUTPUT_WAIT_S) -> None:
        with self._seen:
            self._seen.wait_for(lambda: self.marks >= marks or self.closed, timeout)


@contextlib.contextmanager
def _main_module_hidden() -> Iterator[None]:
    """Spawn re-runs the parent's ``__main__`` in the child (a script, ``relay-local``'s console
    script, ``python -m bench``): an instance runs only its function, so it is shown none."""
    main = sys.modules.get("__main__")
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        if main is not None:
            sys.modules["__main__"] = main


# -- the pool -------------------------------------------------------------------------------------


@dataclass
class _Instance:
    process: Any  # multiprocessing.context.SpawnProcess
    conn: Connection
    generation: int
    started_at: float
    pid: int = 0
    pumps: tuple[_Pump, ...] = ()
    invocations: int = 0
    busy: bool = False
    request_id: str = ""
    _stopped: bool = False
    _stop_lock: threading.Lock = field(default_factory=threading.Lock)

    def output_copied(self) -> None:
        """Wait until what the instance printed up to its last answer is copied out."""
        for pump in self.pumps:
            pump.wait_for(self.invocations + 1)

    def kill(self) -> None:
        with self._stop_lock:
            if not self._stopped:
                self.process.kill()

    def stop(self, wait_s: float = 5.0) -> None:
        """End the process now (Lambda gives a retired instance no notice either)."""
        with self._stop_lock:
            if self._stopped:
                return
            self._stopped = True
            with contextlib.suppress(OSError):
                self.conn.close()
            if self.process.is_alive():
                self.process.terminate()
            self.process.join(wait_s)
            if self.process.is_alive():
                self.process.kill()
                self.process.join(wait_s)
            self.process.close()

    def exit_description(self) -> str:
        self.process.join(2)
        code = self.process.exitcode
        if code is None:
            return "the instance stopped answering"
        if code < 0:
            try:
                return f"Runtime exited with error: signal: {signal.Signals(-code).name}"
            except ValueError:
                return f"Runtime exited with error: signal {-code}"
        return f"Runtime exited with error: exit status {code}"


@dataclass(frozen=True)
class InstanceInfo:
    """A live instance of a function, as :meth:`LocalFunction.instances` reports it."""

    pid: int
    busy: bool
    request_id: str
    invocations: int
    generation: int
    started_at: float


@dataclass
class LocalFunction:
    """A function of the template and its pool of instance processes."""

    logical_id: str
    code_uri: Path
    handler_name: str
    timeout_s: float = 3
    memory_mb: int = 128
    region: str = "us-east-1"
    events: Mapping[str, Any] = field(default_factory=dict)
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    layers: Sequence[Path] = ()
    environment: dict[str, str] | None = None
    """The function's environment; None: the stack process's ``os.environ`` at each cold start."""
    init_timeout_s: float = INIT_TIMEOUT_S
    cold_starts: int = 0
    crashes: int = 0
    timeouts: int = 0
    _live: list[_Instance] = field(default_factory=list, repr=False)
    _idle: list[_Instance] = field(default_factory=list, repr=False)
    _starting: int = field(default=0, repr=False)
    _generation: int = field(default=0, repr=False)
    _closed: bool = field(default=False, repr=False)
    _lock: threading.Condition = field(default_factory=threading.Condition, repr=False)

    # -- invoking -----------------------------------------------------------------------------

    def invoke(self, event: Any) -> Any:
        """Run one invocation on an idle instance (a new one, a cold start, if none is idle) and
        return the handler's result; raise :class:`InvocationError` if it failed."""
        instance = self._acquire()
        request_id = str(uuid.uuid4())
        keep = False
        try:
            deadline = time.monotonic() + self.timeout_s
            instance.request_id = request_id
            try:
                instance.conn.send((event, request_id, deadline))
            except (OSError, EOFError):
                self._count("crashes")
                raise self._crashed(instance, request_id) from None
            except Exception:
                keep = True  # the event could not be pickled: nothing reached the instance
                raise
            if not instance.conn.poll(max(0.0, deadline - time.monotonic())):
                self._count("timeouts")
                instance.kill()
                raise InvocationTimeout(
                    self.logical_id,
                    "Sandbox.Timedout",
                    f"Task timed out after {self.timeout_s:.2f} seconds",
                    request_id=request_id,
                )
            try:
                kind, payload = instance.conn.recv()
            except (EOFError, OSError):
                self._count("crashes")
                raise self._crashed(instance, request_id) from None
            instance.invocations += 1
            instance.output_copied()
            if kind == "ok":
                keep = True
                return payload
            error_type, message, stack = payload
            keep = error_type not in ("SystemExit", "KeyboardInterrupt")
            raise InvocationError(self.logical_id, error_type, message, stack, request_id)
        finally:
            self._release(instance, keep)

    def _crashed(self, instance: _Instance, request_id: str) -> InstanceCrashed:
        return InstanceCrashed(
            self.logical_id,
            "Runtime.ExitError",
            f"{instance.exit_description()} (pid {instance.pid})",
            request_id=request_id,
        )

    def _count(self, name: str) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + 1)

    def _acquire(self) -> _Instance:
        retired: list[_Instance] = []
        try:
            with self._lock:
                while True:
                    if self._closed:
                        raise RuntimeError(f"{self.logical_id} is stopped")
                    while self._idle:
                        instance = self._idle.pop()  # the most recently used: the warmest
                        if instance.generation == self._generation and instance.process.is_alive():
                            instance.busy = True
                            return instance
                        self._live.remove(instance)
                        retired.append(instance)
                    if len(self._live) + self._starting < max(1, self.max_concurrency):
                        self._starting += 1
                        generation = self._generation
                        environment = dict(self.environment if self.environment is not None else os.environ)
                        break
                    self._lock.wait()
        finally:
            for instance in retired:
                instance.stop()
        try:
            instance = self._start_instance(generation, environment)
        except BaseException:
            with self._lock:
                self._starting -= 1
                self._lock.notify_all()
            raise
        with self._lock:
            self._starting -= 1
            self.cold_starts += 1
            instance.busy = True
            self._live.append(instance)
            if not self._closed:
                return instance
            self._live.remove(instance)
        instance.stop()
        raise RuntimeError(f"{self.logical_id} is stopped")

    def _release(self, instance: _Instance, keep: bool) -> None:
        with self._lock:
            instance.busy = False
            instance.request_id = ""
            keep = keep and not self._closed and instance.generation == self._generation
            if keep:
                self._idle.append(instance)
            elif instance in self._live:
                self._live.remove(instance)
            self._lock.notify_all()
        if not keep:
            instance.stop()

    def _start_instance(self, generation: int, environment: dict[str, str]) -> _Instance:
        """A cold start: spawn the process and wait until it has imported the handler."""
        spec = _InstanceSpec(
            function_name=self.logical_id,
            code_uri=str(self.code_uri),
            handler=self.handler_name,
            layers=tuple(str(layer) for layer in self.layers),
            environment=environment,
            timeout_s=self.timeout_s,
            memory_mb=self.memory_mb,
            region=self.region,
        )
        context = multiprocessing.get_context("spawn")
        ours, theirs = context.Pipe()
        out_reader, out_writer = context.Pipe(duplex=False)
        err_reader, err_writer = context.Pipe(duplex=False)
        name = f"relay-local:{self.logical_id}"
        process = context.Process(
            target=_instance_main, args=(theirs, out_writer, err_writer, spec), name=name, daemon=True
        )
        with _spawn_lock, _main_module_hidden():
            process.start()
        for end in (theirs, out_writer, err_writer):
            end.close()  # the instance's alone now: when it dies, reading ours ends (EOF)
        short = Path(self.code_uri).name  # functions/dispatch/ -> dispatch
        pumps = (_Pump(out_reader, "stdout", name, short), _Pump(err_reader, "stderr", name, short))
        for pump in pumps:
            pump.start()
        instance = _Instance(process, ours, generation, time.time(), pid=int(process.pid or 0), pumps=pumps)
        started = time.monotonic()
        try:
            if not ours.poll(self.init_timeout_s):
                raise InvocationError(
                    self.logical_id,
                    "Runtime.InitTimeout",
                    f"the instance did not import its handler within {self.init_timeout_s:.0f} s",
                )
            try:
                kind, payload = ours.recv()
            except (EOFError, OSError):
                raise InvocationError(
                    self.logical_id, "Runtime.ExitError", instance.exit_description()
                ) from None
            if kind == "init_error":
                error_type, message, stack = payload
                raise InvocationError(
                    self.logical_id, f"Runtime.ImportModuleError: {error_type}", message, stack
                )
            instance.output_copied()
        except BaseException:
            instance.stop()
            raise
        log.debug(
            "%s: cold start of pid %s in %.2f s", self.logical_id, instance.pid, time.monotonic() - started
        )
        return instance

    # -- managing the pool --------------------------------------------------------------------

    def warm(self, count: int = 1) -> None:
        """Start instances until ``count`` are live (a broken handler raises here)."""
        started = []
        try:
            while True:
                with self._lock:
                    if len(self._live) + self._starting >= min(count, max(1, self.max_concurrency)):
                        return
                started.append(self._acquire())
        finally:
            for instance in started:
                self._release(instance, keep=True)

    def update_environment(self, environment: Mapping[str, str] | None) -> None:
        """A configuration update: later invocations run on instances started with
        ``environment`` (None: the stack process's environment at each cold start); idle
        instances are retired now, busy ones when their invocation ends."""
        with self._lock:
            self.environment = dict(environment) if environment is not None else None
            retired = self._retire_idle_locked()
        for instance in retired:
            instance.stop()

    def retire(self) -> None:
        """Retire every instance (idle now, busy when done), as a new version would."""
        with self._lock:
            retired = self._retire_idle_locked()
        for instance in retired:
            instance.stop()

    def _retire_idle_locked(self) -> list[_Instance]:
        self._generation += 1
        retired, self._idle = self._idle, []
        for instance in retired:
            self._live.remove(instance)
        self._lock.notify_all()
        return retired

    def instances(self) -> list[InstanceInfo]:
        """The live instances (busy or idle), oldest first."""
        with self._lock:
            return [
                InstanceInfo(i.pid, i.busy, i.request_id, i.invocations, i.generation, i.started_at)
                for i in self._live
            ]

    def busy_pids(self) -> list[int]:
        """Process ids of the instances running an invocation right now."""
        return [info.pid for info in self.instances() if info.busy]

    def stop(self) -> None:
        """Stop every instance, busy ones included (their invocations fail). Safe to call twice."""
        with self._lock:
            self._closed = True
            instances, self._live, self._idle = self._live, [], []
            self._lock.notify_all()
        for instance in instances:
            instance.kill()  # all at once; a busy one's invoking thread sees EOF and stops it
        for instance in instances:
            if not instance.busy:
                instance.stop()


# -- from the template ----------------------------------------------------------------------------


def _layer_dirs(template: Mapping[str, Any], props: Mapping[str, Any], template_dir: Path) -> list[Path]:
    """Local directories of the function's ``!Ref``-ed ``AWS::Serverless::LayerVersion`` layers."""
    resources = template.get("Resources") or {}
    out = []
    for layer in props.get("Layers") or []:
        ref = layer.get("Ref") if isinstance(layer, dict) else None
        resource = resources.get(ref) if isinstance(ref, str) else None
        if not isinstance(resource, dict) or resource.get("Type") != "AWS::Serverless::LayerVersion":
            continue
        content = (resource.get("Properties") or {}).get("ContentUri")
        if isinstance(content, str) and "://" not in content:
            out.append((template_dir / content).resolve())
    return out


def functions_from_template(
    template: Mapping[str, Any],
    template_dir: str | Path,
    region: str = "us-east-1",
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
) -> dict[str, LocalFunction]:
    """Every ``AWS::Serverless::Function`` with a local CodeUri (no instance is started yet).

    A function's ``ReservedConcurrentExecutions`` caps its instances; ``max_concurrency`` the rest.
    """
    template_dir = Path(template_dir)
    globals_fn = (template.get("Globals") or {}).get("Function") or {}
    out: dict[str, LocalFunction] = {}
    for logical_id, resource in (template.get("Resources") or {}).items():
        if not isinstance(resource, dict) or resource.get("Type") != "AWS::Serverless::Function":
            continue
        props = {**globals_fn, **(resource.get("Properties") or {})}
        code_uri = props.get("CodeUri")
        if not isinstance(code_uri, str) or "://" in code_uri:
            continue
        reserved = props.get("ReservedConcurrentExecutions")
        out[logical_id] = LocalFunction(
            logical_id=logical_id,
            code_uri=(template_dir / code_uri).resolve(),
            handler_name=str(props.get("Handler", "app.lambda_handler")),
            timeout_s=float(props.get("Timeout", 3)),
            memory_mb=int(props.get("MemorySize", 128)),
            region=region,
            events=props.get("Events") or {},
            max_concurrency=int(reserved) if isinstance(reserved, int | str) else max_concurrency,
            layers=_layer_dirs(template, props, template_dir),
        )
    return out

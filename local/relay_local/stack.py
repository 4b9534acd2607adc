"""The whole relay on one machine: moto, the template's resources, the HTTP API and SQS pollers.

Used by ``make dev`` (``relay-local``), integration tests and benchmarks::

    with LocalStack(api_port=0) as stack:
        auth = {"Authorization": f"Bearer {stack.api_key}"}
        httpx.post(f"{stack.api_url}/v1/optimized/triggers", headers=auth, json=...)
"""

from __future__ import annotations

import collections
import logging
import os
import secrets
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from relay_local import aws, lambdas
from relay_local.gateway import Gateway, http_api_routes
from relay_local.lambdas import DEFAULT_MAX_CONCURRENCY, LocalFunction, functions_from_template
from relay_local.pollers import Pollers, SqsPoller, sqs_mappings
from relay_local.template import load_template

log = logging.getLogger(__name__)

_REPO_ROOT = Path(__file__).resolve().parents[2]
_SANDBOX_LIMITS = (
    ("OPTIMIZED_GROUP_LIMIT", "group_limit", 10),
    ("OPTIMIZED_GROUP_WINDOW_S", "group_window_s", 60),
    ("OPTIMIZED_TOKEN_LIMIT", "token_limit", 250),
    ("OPTIMIZED_TOKEN_WINDOW_S", "token_window_s", 60),
)


def _number(value: str) -> int | float:
    number = float(value)
    return int(number) if number.is_integer() else number


def refresh_relay_caches() -> None:
    """Make the relay library *in this process* re-read settings and re-create AWS clients.

    The functions run in processes of their own and never need this; it is for code that uses
    the relay library beside the stack (benchmarks accepting triggers in-process) after the
    stack changed the environment (start, stop, :meth:`LocalStack.update_environment`)."""
    from relay.core import wiring

    wiring.reset()


_active: LocalStack | None = None
_active_lock = threading.Lock()


class LocalStack:
    """moto + resources from the template + HTTP API gateway + SQS pollers (+ sandbox upstream).

    ``env`` overrides the process environment (e.g. compressed limits for tests); ``sandbox``:
    None starts the sandbox Optimized.app only when ``OPTIMIZED_API_URL`` is not set, True/False
    force it on/off. Environment changes are undone by ``stop()``.

    Every function runs in processes of its own, as in Lambda (see :mod:`relay_local.lambdas`),
    with this process's environment as the stack set it; ``max_concurrency`` caps each function's
    instances unless the template reserves concurrency (default ``RELAY_LOCAL_MAX_CONCURRENCY``,
    else 4). ``prewarm``: function ids with one instance started by ``start()`` (a broken handler
    then fails ``start()``); True: every function, the default.
    """

    def __init__(
        self,
        template_path: str | Path = "template.yaml",
        api_port: int = 3000,
        moto_port: int = 0,
        env: dict[str, str] | None = None,
        sandbox: bool | None = None,
        poller_workers: int = 2,
        max_concurrency: int | None = None,
        prewarm: bool | list[str] = True,
        state_file: str | Path | None = None,
    ) -> None:
        path = Path(template_path)
        if not path.is_file() and not path.is_absolute() and (_REPO_ROOT / path).is_file():
            path = _REPO_ROOT / path
        self.template_path = path.resolve()
        self.api_port = api_port
        self.moto_port = moto_port
        self.env_overrides = dict(env or {})
        self.sandbox_mode = sandbox
        self.poller_workers = poller_workers
        self.max_concurrency = max_concurrency
        self.prewarm = prewarm
        # Where the stack tells the `relay` command about itself (``make dev``: .venv/relay-local.json);
        # None: only where RELAY_LOCAL_STATE names, if it does.
        self.state_file = Path(state_file) if state_file else None

        self.template: dict[str, Any] = {}
        self.region = "us-east-1"
        self.moto_server: Any = None
        self.moto_endpoint: str = ""
        self.resources: aws.LocalResources | None = None
        self.functions: dict[str, LocalFunction] = {}
        self.gateway: Gateway | None = None
        self.pollers: Pollers | None = None
        self.sandbox: Any = None
        self.sandbox_optimove: Any = None
        self.sandbox_batch: Any = None
        self.schedules: Any = None
        self.api_key: str = ""
        self._saved_env: dict[str, str | None] = {}
        self._started = False

    # -- environment ----------------------------------------------------------------------------

    def _setenv(self, key: str, value: str, *, override: bool = True) -> None:
        if not override and key in os.environ:
            return
        if key not in self._saved_env:
            self._saved_env[key] = os.environ.get(key)
        os.environ[key] = value

    def _unsetenv(self, key: str) -> None:
        if key in os.environ:
            self._saved_env.setdefault(key, os.environ[key])
            del os.environ[key]

    def _restore_env(self) -> None:
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_env.clear()

    # -- lifecycle ------------------------------------------------------------------------------

    @property
    def api_url(self) -> str:
        if self.gateway is None:
            raise RuntimeError("LocalStack is not started")
        return self.gateway.url

    def start(self) -> Self:
        global _active
        if self._started:
            return self
        with _active_lock:
            if _active is not None:
                raise RuntimeError(
                    "another LocalStack is already running in this process: moto's backends are "
                    "process-global, so two stacks would share (and reset) the same tables and queues"
                )
            _active = self
        self._started = True
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        self.template = load_template(self.template_path)

        # 1. An AWS of our own, configured before any handler (or boto3 client) exists.
        self.moto_server, self.moto_endpoint = aws.start_moto(self.moto_port)
        self._setenv("AWS_ENDPOINT_URL", self.moto_endpoint)
        self.region = (
            self.env_overrides.get("AWS_DEFAULT_REGION")
            or os.environ.get("AWS_DEFAULT_REGION")
            or "us-east-1"
        )
        self._setenv("AWS_DEFAULT_REGION", self.region)
        self._setenv("AWS_REGION", self.region)
        self._setenv("AWS_ACCESS_KEY_ID", "testing")
        self._setenv("AWS_SECRET_ACCESS_KEY", "testing")
        for key in ("AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_PROFILE"):
            self._unsetenv(key)
        # moto's backends are process-global and outlive a stopped server: start from nothing.
        self.resources = aws.reset(self.moto_endpoint, self.template, self.region)

        # 2. The functions' environment from the template, then the caller's overrides.
        max_concurrency = self.max_concurrency or int(
            os.environ.get("RELAY_LOCAL_MAX_CONCURRENCY", DEFAULT_MAX_CONCURRENCY)
        )
        self.functions = functions_from_template(
            self.template, self.template_path.parent, self.region, max_concurrency=max_concurrency
        )
        for function_id in self.functions:
            for key, value in aws.function_environment(self.template, self.resources, function_id).items():
                self._setenv(key, value, override=False)
        for key, value in self.env_overrides.items():
            self._setenv(key, str(value))

        # 3. Upstreams: the sandbox unless a real Optimized.app is configured.
        use_sandbox = self.sandbox_mode
        if use_sandbox is None:
            use_sandbox = not os.environ.get("OPTIMIZED_API_URL")
        if use_sandbox:
            self._start_sandbox()
        if self.sandbox_mode is not False and not os.environ.get("OPTIMOVE_API_URL"):
            self._start_sandbox_optimove()
        if self.sandbox_mode is not False and not os.environ.get("BATCH_API_URL"):
            self._start_sandbox_batch()

        keys = [key.strip() for key in os.environ.get("RELAY_API_KEYS", "").split(",") if key.strip()]
        if keys:
            self.api_key = keys[0]
        else:
            self.api_key = f"dev-{secrets.token_hex(16)}"
            self._setenv("RELAY_API_KEYS", self.api_key)
        refresh_relay_caches()

        # 4. Functions (each instance gets the environment as it is now), HTTP API, pollers.
        self._configure_functions()
        self._prewarm()
        invokers = {function_id: function.invoke for function_id, function in self.functions.items()}
        self.gateway = Gateway(http_api_routes(self.template, invokers), port=self.api_port).start()
        self.pollers = Pollers(self._make_pollers()).start()
        self._start_schedules()
        self._write_state()
        log.info("local stack up: API %s, moto %s", self.api_url, self.moto_endpoint)

    def _write_state(self) -> None:
        from relay_ops import target

        path = self.state_file or (
            Path(os.environ[target.STATE_FILE_ENV]) if os.environ.get(target.STATE_FILE_ENV) else None
        )
        if path is None:
            return
        self.state_file = path
        target.write_state(
            path,
            api_url=self.api_url,
            api_key=self.api_key,
            environment=self.operator_environment(),
            webhook_secret=os.environ.get("WEBHOOK_SECRET"),
        )

    def _configure_functions(self) -> None:
        environment = dict(os.environ)
        for function in self.functions.values():
            function.update_environment(environment)

    def _prewarm(self) -> None:
        """One instance of each chosen function, started side by side (a cold start each)."""
        if self.prewarm is True:
            chosen = list(self.functions.values())
        else:
            chosen = [self.functions[f] for f in self.prewarm or () if f in self.functions]
        if not chosen:
            return
        with ThreadPoolExecutor(len(chosen), thread_name_prefix="prewarm") as pool:
            for future in [pool.submit(function.warm) for function in chosen]:
                future.result()

    # -- configuration updates ------------------------------------------------------------------

    def update_environment(self, **values: str | None) -> dict[str, str | None]:
        """Change environment variables of every function (None removes one), as a Lambda
        configuration update does: idle instances are retired, busy ones when their invocation
        ends, and later invocations run on instances started with the new environment. This
        process's environment changes too (``stop()`` restores it). Returns the previous values,
        for :meth:`update_environment` to put back."""
        previous = {key: os.environ.get(key) for key in values}
        if all(previous[key] == (None if value is None else str(value)) for key, value in values.items()):
            return previous  # nothing changes: the instances stay
        for key, value in values.items():
            if value is None:
                self._unsetenv(key)
            else:
                self._setenv(key, str(value))
        refresh_relay_caches()
        if self._started:
            self._configure_functions()
        return previous

    @contextmanager
    def environment(self, **values: str | None) -> Iterator[Self]:
        """:meth:`update_environment` for a block, then the previous values again."""
        previous = self.update_environment(**values)
        try:
            yield self
        finally:
            self.update_environment(**previous)

    @classmethod
    def active(cls) -> LocalStack | None:
        """The stack running in this process, if any."""
        with _active_lock:
            return _active

    def _start_sandbox(self) -> None:
        from relay_local.sandbox_optimized import SandboxOptimized

        limits = {
            kwarg: _number(os.environ.get(env, str(default))) for env, kwarg, default in _SANDBOX_LIMITS
        }
        token = os.environ.get("OPTIMIZED_API_TOKEN") or f"sandbox-{secrets.token_hex(12)}"
        self.sandbox = SandboxOptimized(host="127.0.0.1", port=0, token=token, **limits).start()
        self._setenv("OPTIMIZED_API_URL", self.sandbox.url)
        self._setenv("OPTIMIZED_API_TOKEN", token)

    def _start_sandbox_optimove(self) -> None:
        from relay_local.sandbox_optimove import SandboxOptimove

        api_key = os.environ.get("OPTIMOVE_API_KEY") or f"sandbox-{secrets.token_hex(8)}"
        brand_key = os.environ.get("OPTIMOVE_BRAND_KEY") or f"brand-{secrets.token_hex(8)}"
        self.sandbox_optimove = SandboxOptimove(
            port=0,
            api_key=api_key,
            brand_key=brand_key,
            rps=float(os.environ.get("OPTIMOVE_BRAND_RPS", "500")),
            queued_s=float(os.environ.get("SANDBOX_OPTIMOVE_QUEUED_S", "1")),
            processing_s=float(os.environ.get("SANDBOX_OPTIMOVE_PROCESSING_S", "2")),
        ).start()
        self._setenv("OPTIMOVE_API_URL", self.sandbox_optimove.url)
        self._setenv("OPTIMOVE_API_KEY", api_key)
        self._setenv("OPTIMOVE_BRAND_KEY", brand_key)

    def _start_sandbox_batch(self) -> None:
        """Batch.com's sandbox, enforcing the limits the relay is configured with (compressed
        limits in tests compress the sandbox's too)."""
        from relay_local.sandbox_batch import SandboxBatch

        rest_key = os.environ.get("BATCH_REST_KEY") or f"sandbox-{secrets.token_hex(8)}"
        project_key = os.environ.get("BATCH_PROJECT_KEY") or f"project_{secrets.token_hex(8)}"
        self.sandbox_batch = SandboxBatch(
            port=0,
            rest_key=rest_key,
            project_key=project_key,
            operations_per_call=int(os.environ.get("BATCH_OPERATIONS_PER_CALL", "200")),
            updates_per_s=float(os.environ.get("BATCH_PROFILE_UPDATES_PER_S", "300")),
            updates_burst=float(os.environ.get("BATCH_PROFILE_UPDATES_BURST", "1000")),
            project_rps=float(os.environ.get("BATCH_PROJECT_RPS", "1")),
            event_name_pattern=os.environ.get("BATCH_EVENT_NAME_PATTERN", r"^[a-z0-9_]{1,30}$"),
            max_text_length=int(os.environ.get("BATCH_MAX_TEXT_LENGTH", "300")),
        ).start()
        self._setenv("BATCH_API_URL", self.sandbox_batch.url)
        self._setenv("BATCH_REST_KEY", rest_key)
        self._setenv("BATCH_PROJECT_KEY", project_key)

    def _start_schedules(self) -> None:
        from relay_local.schedules import ScheduleRunner, scheduled_functions

        targets = [
            (f"{fid}.{name}", self.functions[fid].invoke)
            for fid, name in scheduled_functions(self.template)
            if fid in self.functions
        ]
        every = float(os.environ.get("RELAY_LOCAL_SCHEDULE_EVERY_S", "5"))
        self.schedules = ScheduleRunner(targets, every, self.region).start()

    def _make_pollers(self) -> list[SqsPoller]:
        assert self.resources is not None
        pollers = []
        sqs = aws.client("sqs", self.moto_endpoint, self.region)
        for mapping in sqs_mappings(self.template):
            function = self.functions.get(mapping.function_id)
            if function is None or not mapping.enabled:
                continue
            queue = self.resources[mapping.queue_logical_id]
            pollers.append(
                SqsPoller(
                    sqs,
                    queue.url or "",
                    queue.arn,
                    function.invoke,
                    batch_size=mapping.batch_size,
                    report_batch_item_failures=mapping.report_batch_item_failures,
                    workers=self.poller_workers,
                    region=self.region,
                    name=f"{mapping.function_id}.{mapping.event_name}",
                )
            )
        return pollers

    def stop(self) -> None:
        """Stop pollers, HTTP API, sandbox and moto; restore the environment. Safe to call twice."""
        if self.state_file is not None:
            from relay_ops import target

            target.remove_state(self.state_file)
        if getattr(self, "schedules", None) is not None:
            self.schedules.stop()
            self.schedules = None
        if self.pollers is not None:
            # Let running invocations finish (a dispatcher may be in a short slot wait), so none
            # is left talking to a moto that is gone.
            self.pollers.stop(timeout=10.0)
            self.pollers = None
        if getattr(self, "sandbox_optimove", None) is not None:
            self.sandbox_optimove.stop()
            self.sandbox_optimove = None
        if getattr(self, "sandbox_batch", None) is not None:
            self.sandbox_batch.stop()
            self.sandbox_batch = None
        if self.gateway is not None:
            self.gateway.stop()
            self.gateway = None
        if self.functions:
            with ThreadPoolExecutor(len(self.functions), thread_name_prefix="stop") as pool:
                list(pool.map(LocalFunction.stop, self.functions.values()))
        if self.sandbox is not None:
            self.sandbox.stop()
            self.sandbox = None
        if self.moto_server is not None:
            try:
                self.moto_server.stop()
            finally:
                self.moto_server = None
        self._restore_env()
        if self._started:
            refresh_relay_caches()
        self._started = False
        global _active
        with _active_lock:
            if _active is self:
                _active = None

    def reset_aws(self) -> aws.LocalResources:
        """Wipe moto and re-create the template's resources (same names and URLs).

        Pollers are paused and running invocations finish first, so no work of before the reset
        lands in the fresh tables and queues. Warm instances stay: what they hold (clients,
        table names, queue URLs) is still right."""
        if self.pollers is not None:
            with self.pollers.paused():
                return self._reset_aws()
        return self._reset_aws()

    def _reset_aws(self) -> aws.LocalResources:
        resources = aws.reset(self.moto_endpoint, self.template, self.region)
        assert resources is not None
        self.resources = resources
        return resources

    def set_queue_attributes(self, logical_id: str, **attributes: str) -> None:
        """Change a queue's attributes (e.g. ``VisibilityTimeout="2"`` to compress time in a
        test), effective for every message received from now on, as in SQS."""
        url = self.resources.url(logical_id)
        aws.client("sqs", self.moto_endpoint, self.region).set_queue_attributes(
            QueueUrl=url, Attributes=attributes
        )
        for poller in self.pollers.pollers if self.pollers else []:
            if poller.queue_url == url:
                poller.await_receives_begun_before()

    def operator_environment(self) -> dict[str, str]:
        """What the `relay` command needs to reach this stack's AWS: the emulator's endpoint,
        region and credentials, and every table and queue as the functions' environment names
        them (written to its file by ``make dev``, see :mod:`relay_ops.target`)."""
        from relay_ops.target import AWS_KEYS, is_resource_variable

        return {k: v for k, v in os.environ.items() if k in AWS_KEYS or is_resource_variable(k)}

    def failpoints_fired(self) -> collections.Counter[str]:
        """How often each failpoint (``RELAY_FAILPOINTS``) fired in a function instance, by name."""
        return lambdas.failpoints_fired()

    def metrics_emitted(self) -> collections.Counter[str]:
        """Every EMF metric the functions printed (e.g. the reconciler's ``Repaired<Kind>``),
        summed by name; metrics must not be disabled (``POWERTOOLS_METRICS_DISABLED``)."""
        return lambdas.metrics_emitted()

    def poller_stats(self) -> dict[str, dict[str, int]]:
        return self.pollers.stats() if self.pollers else {}

    def function(self, logical_id: str) -> LocalFunction:
        return self.functions[logical_id]

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

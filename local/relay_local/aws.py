"""An embedded AWS (moto in server mode) with the template's tables and queues created in it.

Everything is created from ``template.yaml``'s ``Resources`` with real boto3 calls against the
moto endpoint, so what runs locally is what the template declares: key schema, GSIs, TTL,
queue timeouts, FIFO settings and redrive policies.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import threading
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.config import Config

from relay_local.template import (
    DEFAULT_ACCOUNT_ID,
    Resolver,
    references,
    resources_of_type,
)

log = logging.getLogger(__name__)

TABLE_TYPE = "AWS::DynamoDB::Table"
QUEUE_TYPE = "AWS::SQS::Queue"
FUNCTION_TYPES = ("AWS::Serverless::Function", "AWS::Lambda::Function")

DUMMY_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}

_QUEUE_ATTRIBUTES = (
    "DelaySeconds",
    "MaximumMessageSize",
    "MessageRetentionPeriod",
    "ReceiveMessageWaitTimeSeconds",
    "VisibilityTimeout",
    "FifoQueue",
    "ContentBasedDeduplication",
    "DeduplicationScope",
    "FifoThroughputLimit",
    "RedrivePolicy",
    "RedriveAllowPolicy",
    "SqsManagedSseEnabled",
)


class DynamoDBLock:
    """WSGI middleware: one DynamoDB request at a time per table.

    moto's DynamoDB backend is not thread-safe: a query iterating a table while a transaction
    writes to it fails with "dictionary changed size during iteration". Real DynamoDB has no such
    problem, so the emulator is serialised here - per table, so that traffic on one table never
    waits for another; a request naming several tables takes their locks in order. SQS (with its
    long polls) stays concurrent.
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}

    def _lock(self, table: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(table, threading.Lock())

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if not environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB"):
            return self.app(environ, start_response)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        locks = [self._lock(name) for name in sorted(_table_names(body))] or [self._lock("")]
        with contextlib.ExitStack() as held:
            for lock in locks:
                held.enter_context(lock)
            # Materialise the body inside the locks: werkzeug may iterate it lazily.
            return list(self.app(environ, start_response))


def _table_names(body: bytes) -> set[str]:
    """Every table a DynamoDB request touches (an unreadable body locks nothing but itself)."""
    try:
        request = json.loads(body or b"{}")
    except ValueError:
        return set()
    names = set()
    if isinstance(request.get("TableName"), str):
        names.add(request["TableName"])
    names.update(request.get("RequestItems") or {})
    for item in request.get("TransactItems") or []:
        for operation in item.values():
            if isinstance(operation, dict) and isinstance(operation.get("TableName"), str):
                names.add(operation["TableName"])
    return names


def start_moto(port: int = 0, *, in_process: bool = False) -> tuple[Any, str]:
    """Start moto's threaded server on 127.0.0.1 (a free port when ``port`` is 0).

    By default in a child process (see relay_local.moto_process: a core and a state of its
    own); ``in_process=True`` runs it in a thread here. Returns ``(server, endpoint_url)``;
    stop it with ``server.stop()``.
    """
    if not in_process:
        from relay_local.moto_process import MotoProcess

        child = MotoProcess(port)
        return child, f"http://127.0.0.1:{child.port}"
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from moto.server import ThreadedMotoServer
    from werkzeug.serving import make_server

    from relay_local import moto_patches

    moto_patches.apply()

    class SerialisedDynamoDBMotoServer(ThreadedMotoServer):
        def _server_entry(self) -> None:
            app = DynamoDBLock(DomainDispatcherApplication(create_backend_app))
            self._server = make_server(
                self._ip_address, self._port, app, True, request_handler=MotoRequestHandler
            )
            self._server_ready_event.set()
            self._server.serve_forever()

    # werkzeug logs every request at INFO; the local stack is quiet unless something is wrong.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = SerialisedDynamoDBMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    _host, bound_port = server.get_host_and_port()
    return server, f"http://127.0.0.1:{bound_port}"


def client(service: str, endpoint_url: str, region: str) -> Any:
    """A boto3 client for the local endpoint with dummy credentials (never real ones)."""
    return boto3.session.Session(region_name=region, **DUMMY_CREDENTIALS).client(
        service,
        endpoint_url=endpoint_url,
        config=Config(retries={"max_attempts": 2, "mode": "standard"}),
    )


@dataclass
class LocalResource:
    """Physical values of one locally created resource."""

    logical_id: str
    type: str
    name: str
    arn: str
    ref: str
    """What ``!Ref`` returns: the table name, the queue URL."""
    url: str | None = None
    attributes: dict[str, str] = field(default_factory=dict)
    """What ``!GetAtt`` returns, by attribute name (``Arn``, ``QueueUrl``, ``QueueName`` ...)."""


@dataclass
class LocalResources:
    """Logical id -> physical values of every table and queue created from the template."""

    endpoint_url: str
    region: str
    account_id: str = DEFAULT_ACCOUNT_ID
    by_id: dict[str, LocalResource] = field(default_factory=dict)

    def __getitem__(self, logical_id: str) -> LocalResource:
        return self.by_id[logical_id]

    def __contains__(self, logical_id: object) -> bool:
        return logical_id in self.by_id

    def __iter__(self):
        return iter(self.by_id)

    def name(self, logical_id: str) -> str:
        return self.by_id[logical_id].name

    def arn(self, logical_id: str) -> str:
        return self.by_id[logical_id].arn

    def url(self, logical_id: str) -> str:
        url = self.by_id[logical_id].url
        if url is None:
            raise KeyError(f"{logical_id} has no URL")
        return url

    def tables(self) -> dict[str, LocalResource]:
        return {key: value for key, value in self.by_id.items() if value.type == TABLE_TYPE}

    def queues(self) -> dict[str, LocalResource]:
        return {key: value for key, value in self.by_id.items() if value.type == QUEUE_TYPE}

    def queue_by_arn(self, arn: str) -> LocalResource | None:
        return next((q for q in self.queues().values() if q.arn == arn), None)

    def resolver(self, template: Mapping[str, Any]) -> Resolver:
        """A resolver knowing these resources; other resources get plausible fake values."""
        refs: dict[str, Any] = {}
        attrs: dict[str, dict[str, Any]] = {}
        for logical_id, resource in (template.get("Resources") or {}).items():
            service = str((resource or {}).get("Type", "AWS::Unknown::Thing")).split("::")[1].lower()
            refs[logical_id] = logical_id
            attrs[logical_id] = {
                "Arn": f"arn:aws:{service}:{self.region}:{self.account_id}:{logical_id}",
                "Name": logical_id,
            }
        for logical_id, local in self.by_id.items():
            refs[logical_id] = local.ref
            attrs[logical_id] = dict(local.attributes)
        return Resolver(template, refs, attrs, region=self.region, account_id=self.account_id)


def _dependency_order(template: Mapping[str, Any], logical_ids: list[str]) -> list[str]:
    """``logical_ids`` sorted so that a resource comes after those it refers to."""
    wanted = set(logical_ids)
    resources = template.get("Resources") or {}
    deps = {
        lid: (references(resources[lid].get("Properties") or {}) | set(_depends_on(resources[lid])))
        & wanted - {lid}
        for lid in logical_ids
    }
    ordered: list[str] = []
    visiting: set[str] = set()

    def visit(lid: str) -> None:
        if lid in ordered:
            return
        if lid in visiting:
            raise ValueError(f"circular reference involving {lid}")
        visiting.add(lid)
        for dep in sorted(deps[lid], key=logical_ids.index):
            visit(dep)
        visiting.discard(lid)
        ordered.append(lid)

    for lid in logical_ids:
        visit(lid)
    return ordered


def _depends_on(resource: Mapping[str, Any]) -> list[str]:
    value = resource.get("DependsOn") or []
    return [value] if isinstance(value, str) else list(value)


def _bool_str(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _create_table(ddb: Any, logical_id: str, props: Mapping[str, Any]) -> LocalResource:
    name = props.get("TableName") or logical_id
    billing = props.get("BillingMode", "PROVISIONED")
    provisioned = billing == "PROVISIONED"

    def throughput(spec: Mapping[str, Any] | None) -> dict[str, int]:
        spec = spec or {}
        return {
            "ReadCapacityUnits": int(spec.get("ReadCapacityUnits", 5)),
            "WriteCapacityUnits": int(spec.get("WriteCapacityUnits", 5)),
        }

    kwargs: dict[str, Any] = {
        "TableName": name,
        "KeySchema": props["KeySchema"],
        "AttributeDefinitions": props["AttributeDefinitions"],
        "BillingMode": billing,
    }
    if provisioned:
        kwargs["ProvisionedThroughput"] = throughput(props.get("ProvisionedThroughput"))
    gsis = []
    for gsi in props.get("GlobalSecondaryIndexes") or []:
        index = {key: gsi[key] for key in ("IndexName", "KeySchema", "Projection")}
        if provisioned:
            index["ProvisionedThroughput"] = throughput(gsi.get("ProvisionedThroughput"))
        gsis.append(index)
    if gsis:
        kwargs["GlobalSecondaryIndexes"] = gsis
    lsis = [
        {key: lsi[key] for key in ("IndexName", "KeySchema", "Projection")}
        for lsi in props.get("LocalSecondaryIndexes") or []
    ]
    if lsis:
        kwargs["LocalSecondaryIndexes"] = lsis
    stream = props.get("StreamSpecification")
    if stream and stream.get("StreamViewType"):
        kwargs["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": stream["StreamViewType"]}

    table = ddb.create_table(**kwargs)["TableDescription"]
    ddb.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 0.1, "MaxAttempts": 100})
    ttl = props.get("TimeToLiveSpecification")
    if ttl and ttl.get("AttributeName"):
        ddb.update_time_to_live(
            TableName=name,
            TimeToLiveSpecification={
                "Enabled": _bool_str(ttl.get("Enabled", False)) == "true",
                "AttributeName": ttl["AttributeName"],
            },
        )
    attributes = {"Arn": table["TableArn"]}
    if table.get("LatestStreamArn"):
        attributes["StreamArn"] = table["LatestStreamArn"]
    return LocalResource(logical_id, TABLE_TYPE, name, table["TableArn"], ref=name, attributes=attributes)


def _create_queue(sqs: Any, logical_id: str, props: Mapping[str, Any]) -> LocalResource:
    fifo = _bool_str(props.get("FifoQueue", False)) == "true"
    name = props.get("QueueName") or (f"{logical_id}.fifo" if fifo else logical_id)
    attributes: dict[str, str] = {}
    for key in _QUEUE_ATTRIBUTES:
        if key not in props or props[key] is None:
            continue
        value = props[key]
        attributes[key] = json.dumps(value) if isinstance(value, dict) else _bool_str(value)
    url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return LocalResource(
        logical_id,
        QUEUE_TYPE,
        name,
        arn,
        ref=url,
        url=url,
        attributes={"Arn": arn, "QueueUrl": url, "QueueName": name},
    )


def create_resources(
    template: Mapping[str, Any], endpoint_url: str, region: str = "us-east-1"
) -> LocalResources:
    """Create every DynamoDB table and SQS queue of ``template`` in the local endpoint."""
    resources = LocalResources(endpoint_url=endpoint_url, region=region)
    wanted = list(resources_of_type(template, TABLE_TYPE, QUEUE_TYPE))
    all_resources = template.get("Resources") or {}
    ddb = sqs = None
    for logical_id in _dependency_order(template, wanted):
        resource = all_resources[logical_id]
        # Resolve against what exists so far (a DLQ's ARN for a redrive policy, parameters ...).
        props = resources.resolver(template).resolve(resource.get("Properties") or {})
        if resource["Type"] == TABLE_TYPE:
            ddb = ddb or client("dynamodb", endpoint_url, region)
            created = _create_table(ddb, logical_id, props)
        else:
            sqs = sqs or client("sqs", endpoint_url, region)
            created = _create_queue(sqs, logical_id, props)
        log.debug("created %s %s as %s", resource["Type"], logical_id, created.name)
        resources.by_id[logical_id] = created
    return resources


def function_environment(
    template: Mapping[str, Any], resources: LocalResources, function_logical_id: str
) -> dict[str, str]:
    """The function's environment: Globals merged with its own variables, intrinsics resolved.

    Variables whose value comes from a template Parameter are left out: locally those settings
    come from the user's environment and the code's defaults.
    """
    globals_vars = (((template.get("Globals") or {}).get("Function") or {}).get("Environment") or {}).get(
        "Variables"
    ) or {}
    function = (template.get("Resources") or {})[function_logical_id]
    own_vars = ((function.get("Properties") or {}).get("Environment") or {}).get("Variables") or {}
    parameters = set(template.get("Parameters") or {})
    resolver = resources.resolver(template)
    env: dict[str, str] = {}
    for key, value in {**globals_vars, **own_vars}.items():
        if references(value) & parameters:
            continue
        resolved = resolver.resolve(value)
        if resolved is None:
            continue
        env[key] = _bool_str(resolved)
    return env


def reset(
    endpoint_url: str, template: Mapping[str, Any] | None = None, region: str = "us-east-1"
) -> LocalResources | None:
    """Wipe every moto backend (POST /moto-api/reset); re-create the template's resources if given."""
    if not endpoint_url.startswith(("http://", "https://")):
        raise ValueError(f"not an HTTP endpoint: {endpoint_url}")
    request = urllib.request.Request(f"{endpoint_url}/moto-api/reset", data=b"", method="POST")  # noqa: S310
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - checked above
        response.read()
    if template is None:
        return None
    return create_resources(template, endpoint_url, region)

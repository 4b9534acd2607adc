"""Inbound webhooks: events/s through the webhook handler in-process against the moto server,
beside the bare cost of the one DynamoDB write it must make (the conditional de-duplication put).

The handler does, per request: size check, Standard Webhooks verification on the raw bytes,
JSON parse, normalisation, one conditional put (de-duplication) and one SQS send. The baseline
is that conditional put alone, with the same client, item shape and moto server; a second
baseline adds the SQS send, i.e. the request path's bare I/O, so the last ratio says what
verification, parsing and Powertools cost on top. Single-event requests, one thread.

    python -m bench webhooks          (or: python -m bench.bench_webhooks [events])
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import sys
import time
import uuid

from bench.common import REPO, percentile

SECRET = "whsec_" + base64.b64encode(b"benchmark-secret-benchmark-secr!").decode()
DEFAULT_EVENTS = 400


def _environment() -> tuple[object, dict[str, str]]:
    """moto + the template's table and queues, and the webhooks function's environment."""
    from relay_local import aws
    from relay_local.template import load_template

    template = load_template(REPO / "template.yaml")
    server, endpoint = aws.start_moto(0)
    env = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "WEBHOOK_SECRET": SECRET,
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        "POWERTOOLS_METRICS_DISABLED": "true",
        "POWERTOOLS_TRACE_DISABLED": "true",
    }
    os.environ.update(env)
    resources = aws.reset(endpoint, template, "us-east-1")
    assert resources is not None
    os.environ.update(aws.function_environment(template, resources, "WebhooksFunction"))
    return server, env


def _request(body: bytes) -> dict:
    from relay.results.signatures import standard_headers
    from relay_local.gateway import build_http_event

    signed = standard_headers(SECRET, f"msg_{uuid.uuid4().hex}", int(time.time()), body)
    headers = {"content-type": "application/json", **signed}
    path = "/v1/webhooks/optimized"
    return build_http_event("POST", path, headers, body, f"POST {path}")


def main(events: int = DEFAULT_EVENTS) -> None:
    server, _ = _environment()
    try:
        from relay.core import wiring
        from relay.results import store as results
        from relay.results import wiring as results_wiring
        from relay_local.lambdas import LambdaContext, load_handler

        wiring.reset()
        handler = load_handler(REPO / "functions" / "webhooks", "app.lambda_handler")
        context = LambdaContext("WebhooksFunction", timeout_s=10)
        table = wiring.table()

        def body(i: int) -> bytes:
            event = {"id": f"evt-{uuid.uuid4().hex}", "type": "sms.delivered", "seq": i}
            event |= {"profile": {"uuid": str(uuid.uuid4())}, "occurred_at": "2026-01-01T09:00:05Z"}
            return json.dumps(event).encode()

        with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
            for i in range(20):  # warm up both paths
                handler(_request(body(i)), context)
                results.mark_seen(table, "bench", uuid.uuid4().hex, time.time(), 604_800)

        # Interleaved, so machine noise and the queue's growth weigh on the three alike.
        requests = [_request(body(i)) for i in range(events)]
        queue = results_wiring.queue()
        handler_ms: list[float] = []
        write_ms: list[float] = []
        io_ms: list[float] = []
        with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):  # EMF metrics
            for i, request in enumerate(requests):
                t = time.perf_counter()
                answer = handler(request, context)
                handler_ms.append((time.perf_counter() - t) * 1000)
                assert answer["statusCode"] == 202, answer
                t = time.perf_counter()
                results.mark_seen(table, "bench", f"evt-{uuid.uuid4().hex}", time.time(), 604_800)
                write_ms.append((time.perf_counter() - t) * 1000)
                t = time.perf_counter()
                results.mark_seen(table, "bench", f"io-{uuid.uuid4().hex}", time.time(), 604_800)
                queue.send_many([{"kind": "bench", "i": i}])
                io_ms.append((time.perf_counter() - t) * 1000)
        handler_rate = 1000 * events / sum(handler_ms)
        write_rate = 1000 * events / sum(write_ms)
        io_rate = 1000 * events / sum(io_ms)
    finally:
        server.stop()

    print("== Inbound webhooks: handler in-process vs its one DynamoDB write (moto server) ==")
    print(f"   events:                     {events} single-event requests, one thread")
    print(
        f"   webhook handler:            {handler_rate:7.1f} events/s   "
        f"p50 {percentile(handler_ms, 50):6.2f} ms   p99 {percentile(handler_ms, 99):6.2f} ms"
    )
    print(
        f"   bare conditional put:       {write_rate:7.1f} writes/s   "
        f"p50 {percentile(write_ms, 50):6.2f} ms   p99 {percentile(write_ms, 99):6.2f} ms"
    )
    print(
        f"   put + one SQS send (bare):  {io_rate:7.1f} events/s   "
        f"p50 {percentile(io_ms, 50):6.2f} ms   p99 {percentile(io_ms, 99):6.2f} ms"
    )
    print(f"   ratio handler/bare write:   {handler_rate / write_rate:.2f} of the bare write's rate "
          f"({write_rate / handler_rate:.2f}x its time per event)")  # fmt: skip
    print(f"   ratio handler/bare I/O:     {handler_rate / io_rate:.2f} of the bare put+send rate")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_EVENTS)

"""X-Ray subsegments are opt-in: Powertools' Tracer with the X-Ray SDK when they are on, with a
provider that records nothing when they are off.

Why: the X-Ray SDK costs ~90 ms of every cold start just to import, and Powertools imports it even
when tracing is disabled. With ``Tracing: Active`` Lambda itself records each invocation (init,
invoke, overhead) without the SDK; the subsegments (each boto3 and HTTP call, each traced method)
are what ``POWERTOOLS_TRACE_DISABLED=false`` (template parameter ``XRaySubsegments``) adds. The
quiet provider implements Powertools' own ``BaseProvider`` interface, so handlers keep the usual
``tracer.capture_lambda_handler`` / ``capture_method`` decorators either way.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from aws_lambda_powertools import Tracer
from aws_lambda_powertools.shared.functions import resolve_truthy_env_var_choice
from aws_lambda_powertools.tracing.base import BaseProvider, BaseSegment


class _QuietSegment(BaseSegment):
    def close(self, end_time: int | None = None) -> None:
        return None

    def add_subsegment(self, subsegment: Any) -> None:
        return None

    def remove_subsegment(self, subsegment: Any) -> None:
        return None

    def put_annotation(self, key: str, value: Any) -> None:
        return None

    def put_metadata(self, key: str, value: Any, namespace: str = "default") -> None:
        return None

    def add_exception(self, exception: BaseException, stack: Any, remote: bool = False) -> None:
        return None


class QuietProvider(BaseProvider):
    """Records nothing, imports nothing."""

    @contextlib.contextmanager
    def in_subsegment(self, name: str | None = None, **kwargs: Any) -> Iterator[BaseSegment]:
        yield _QuietSegment()

    @contextlib.asynccontextmanager
    async def in_subsegment_async(self, name: str | None = None, **kwargs: Any) -> AsyncIterator[BaseSegment]:
        yield _QuietSegment()

    def put_annotation(self, key: str, value: Any) -> None:
        return None

    def put_metadata(self, key: str, value: Any, namespace: str = "default") -> None:
        return None

    def patch(self, modules: Sequence[str]) -> None:
        return None

    def patch_all(self) -> None:
        return None


def subsegments_on() -> bool:
    """As Powertools decides: on in Lambda unless POWERTOOLS_TRACE_DISABLED, off elsewhere."""
    if resolve_truthy_env_var_choice(env=os.getenv("POWERTOOLS_TRACE_DISABLED", "false")):
        return False
    return bool(os.getenv("LAMBDA_TASK_ROOT")) and not os.getenv("AWS_SAM_LOCAL")


def tracer() -> Tracer:
    """A function's Tracer: X-Ray subsegments when they are on, nothing (and no SDK) otherwise."""
    if subsegments_on():
        return Tracer()
    return Tracer(provider=QuietProvider(), disabled=True, auto_patch=False)

"""Print the CloudFormation that the SAM transform makes of a template, for cfn-lint.

``cfn-lint template.yaml`` validates SAM resources against SAM's own schema but does not look
inside what the transform generates (event source mappings, permissions, routes ...). This runs
the real ``aws-sam-translator`` transform offline (fake region/account, no IAM calls) so that
``cfn-lint`` can lint its output::

    python -m relay_local.translate template.yaml > translated.json && cfn-lint translated.json
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
from collections.abc import Mapping
from typing import Any

from relay_local.template import DEFAULT_ACCOUNT_ID, TemplateError, load_template, pseudo_parameters

# Local paths are replaced by S3 locations, as `sam package` would do.
_LOCAL_URI_PROPERTIES = {
    "AWS::Serverless::Function": "CodeUri",
    "AWS::Serverless::LayerVersion": "ContentUri",
    "AWS::Serverless::Api": "DefinitionUri",
    "AWS::Serverless::HttpApi": "DefinitionUri",
    "AWS::Serverless::StateMachine": "DefinitionUri",
}
_FAKE_BUCKET = "relay-local-artifacts"


class _OfflinePolicyLoader:
    """Stands in for samtranslator's ManagedPolicyLoader without calling IAM."""

    def load(self) -> dict[str, str]:
        names = (
            "AWSLambdaBasicExecutionRole",
            "AWSLambdaSQSQueueExecutionRole",
            "AWSLambdaDynamoDBExecutionRole",
            "AWSLambdaVPCAccessExecutionRole",
            "AWSXrayWriteOnlyAccess",
            "AWSXRayDaemonWriteAccess",
            "CloudWatchLambdaInsightsExecutionRolePolicy",
        )
        return {name: f"arn:aws:iam::aws:policy/service-role/{name}" for name in names}


def _package_local_uris(template: dict[str, Any]) -> None:
    for logical_id, resource in (template.get("Resources") or {}).items():
        if not isinstance(resource, dict):
            continue
        prop = _LOCAL_URI_PROPERTIES.get(str(resource.get("Type")))
        props = resource.get("Properties")
        local = prop and isinstance(props, dict) and isinstance(props.get(prop), str)
        if local and not props[prop].startswith("s3://"):
            props[prop] = f"s3://{_FAKE_BUCKET}/{logical_id}.zip"
    globals_fn = (template.get("Globals") or {}).get("Function") or {}
    if isinstance(globals_fn.get("CodeUri"), str) and not globals_fn["CodeUri"].startswith("s3://"):
        globals_fn["CodeUri"] = f"s3://{_FAKE_BUCKET}/globals.zip"


def translate(
    template: Mapping[str, Any],
    region: str = "us-east-1",
    account_id: str = DEFAULT_ACCOUNT_ID,
    parameter_values: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The CloudFormation template the SAM transform produces from ``template``."""
    from samtranslator.model.exceptions import InvalidDocumentException
    from samtranslator.translator.arn_generator import ArnGenerator
    from samtranslator.translator.transform import transform

    fragment = copy.deepcopy(dict(template))
    _package_local_uris(fragment)
    params = {
        key: value for key, value in pseudo_parameters(region, account_id).items() if key != "AWS::StackId"
    }
    params.update(parameter_values or {})
    previous = ArnGenerator.BOTO_SESSION_REGION_NAME, os.environ.get("AWS_DEFAULT_REGION")
    # The translator asks a boto3 session for the region; it never calls AWS.
    ArnGenerator.BOTO_SESSION_REGION_NAME = region
    os.environ["AWS_DEFAULT_REGION"] = region
    try:
        return transform(fragment, params, _OfflinePolicyLoader())  # type: ignore[arg-type]
    except InvalidDocumentException as exc:
        causes = "; ".join(str(cause) for cause in getattr(exc, "causes", [])) or str(exc)
        raise TemplateError(f"SAM transform failed: {causes}") from exc
    finally:
        ArnGenerator.BOTO_SESSION_REGION_NAME = previous[0]
        if previous[1] is None:
            os.environ.pop("AWS_DEFAULT_REGION", None)
        else:
            os.environ["AWS_DEFAULT_REGION"] = previous[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m relay_local.translate",
        description="Print the CloudFormation JSON that the SAM transform makes of a template.",
    )
    parser.add_argument("template", nargs="?", default="template.yaml")
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--account-id", default=DEFAULT_ACCOUNT_ID)
    args = parser.parse_args(argv)
    try:
        template = load_template(args.template)
        output = translate(template, region=args.region, account_id=args.account_id)
    except ImportError as exc:
        print(
            f"translate: aws-sam-translator is not installed ({exc}); pip install -e '.[dev]'",
            file=sys.stderr,
        )
        return 2
    except (OSError, TemplateError) as exc:
        print(f"translate: {args.template}: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        print(
            f"translate: {args.template}: SAM transform failed: {type(exc).__name__}: {exc}", file=sys.stderr
        )
        return 1
    json.dump(output, sys.stdout, indent=2, sort_keys=False, default=str)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

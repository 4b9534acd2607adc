"""The `relay` command's parts that need no stack: where it finds a deployed relay (moto's
CloudFormation and Secrets Manager, in process), how a file becomes keyed chunks, when a watch ends."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from relay_local.template import load_template
from relay_ops import imports, target, watching
from relay_ops.api import RelayApiError

TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"


def test_every_table_and_queue_the_functions_read_is_a_stack_output_the_command_maps() -> None:
    template = load_template(TEMPLATE)
    variables = {
        name
        for name, value in template["Globals"]["Function"]["Environment"]["Variables"].items()
        if target.is_resource_variable(name) and isinstance(value, dict)
    }
    mapped = {target.output_variable(key) for key in template["Outputs"]}
    assert variables, "the template names its resources in the functions' environment"
    assert variables <= mapped
    assert target.output_variable("ApiUrl") is None
    assert target.output_variable("DispatchDeadLetterQueueUrl") == "DISPATCH_DLQ_URL"
    assert target.output_variable("LinksTableName") == "RELAY_LINKS_TABLE_NAME"


STACK = {
    "AWSTemplateFormatVersion": "2010-09-09",
    "Parameters": {"RelayApiKeysSecretName": {"Type": "String"}},
    "Resources": {"DispatchDeadLetterQueue": {"Type": "AWS::SQS::Queue"}},
    "Outputs": {
        "ApiUrl": {"Value": "https://abc123.execute-api.eu-west-1.amazonaws.com"},
        "TableName": {"Value": "relay-RelayTable-XYZ"},
        "DispatchDeadLetterQueueUrl": {"Value": {"Ref": "DispatchDeadLetterQueue"}},
    },
}


@pytest.fixture
def deployed(monkeypatch: pytest.MonkeyPatch):
    """A deployed relay as CloudFormation describes it (moto in process; no network)."""
    import boto3
    from moto import mock_aws

    for name in (
        "AWS_ENDPOINT_URL",
        "RELAY_API_URL",
        "RELAY_API_KEY",
        "DISPATCH_DLQ_URL",
        "RELAY_TABLE_NAME",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        boto3.client("secretsmanager", region_name="eu-west-1").create_secret(
            Name="campaign-relay/api-keys", SecretString="key-one, key-two"
        )
        boto3.client("cloudformation", region_name="eu-west-1").create_stack(
            StackName="relay-prod",
            TemplateBody=json.dumps(STACK),
            Parameters=[
                {"ParameterKey": "RelayApiKeysSecretName", "ParameterValue": "campaign-relay/api-keys"}
            ],
        )
        yield


def test_stack_name_reads_the_api_url_resources_and_key_from_the_stack(deployed: None) -> None:
    found = target.resolve(stack_name="relay-prod", region="eu-west-1")
    assert found.require_api() == ("https://abc123.execute-api.eu-west-1.amazonaws.com", "key-one")
    assert found.environment["RELAY_TABLE_NAME"] == "relay-RelayTable-XYZ"
    assert "DispatchDeadLetterQueue" in found.environment["DISPATCH_DLQ_URL"]  # the queue moto made
    assert found.environment["AWS_REGION"] == "eu-west-1"
    assert not found.emulated
    # A key given wins, and the secret is then not read at all.
    assert target.resolve(stack_name="relay-prod", region="eu-west-1", api_key="mine").api_key == "mine"


def test_a_missing_stack_is_said_not_raised(deployed: None) -> None:
    with pytest.raises(target.TargetError, match="cannot read stack 'nope'"):
        target.resolve(stack_name="nope", region="eu-west-1")


def test_environment_and_flags_override_the_local_stacks_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = tmp_path / "relay-local.json"
    target.write_state(
        state,
        api_url="http://127.0.0.1:3000",
        api_key="dev-1",
        environment={"AWS_ENDPOINT_URL": "http://127.0.0.1:5000", "DISPATCH_DLQ_URL": "http://q"},
        webhook_secret="whsec_x",
    )
    monkeypatch.setenv(target.STATE_FILE_ENV, str(state))
    for name in ("RELAY_API_URL", "RELAY_API_KEY", "AWS_ENDPOINT_URL", "DISPATCH_DLQ_URL", "WEBHOOK_SECRET"):
        monkeypatch.delenv(name, raising=False)
    found = target.resolve()
    assert (found.api_url, found.api_key, found.webhook_secret) == (
        "http://127.0.0.1:3000",
        "dev-1",
        "whsec_x",
    )
    assert found.emulated
    monkeypatch.setenv("RELAY_API_KEY", "from-env")
    monkeypatch.setenv("DISPATCH_DLQ_URL", "http://other")
    found = target.resolve(api_url="http://elsewhere")
    assert (found.api_url, found.api_key, found.environment["DISPATCH_DLQ_URL"]) == (
        "http://elsewhere",
        "from-env",
        "http://other",
    )
    assert target.resolve(api_key="flag").api_key == "flag"
    # A shell set up for an AWS account does not move the emulator's calls there.
    monkeypatch.setenv("AWS_REGION", "eu-north-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAREAL")
    emulator = target.resolve().environment
    assert (emulator["AWS_ENDPOINT_URL"], emulator.get("AWS_REGION"), emulator.get("AWS_ACCESS_KEY_ID")) == (
        "http://127.0.0.1:5000",
        None,
        None,
    )


def test_a_file_left_by_a_killed_local_stack_is_ignored(tmp_path: Path) -> None:
    state = tmp_path / "relay-local.json"
    state.write_text(json.dumps({"pid": 2**22 + 12345, "api_url": "http://127.0.0.1:3000", "api_key": "k"}))
    assert target.from_local_state(state) is None
    with pytest.raises(target.TargetError, match="no relay found"):
        target.Target().require_api()


# --- files into chunks ----------------------------------------------------------------------------


def test_csv_rows_fill_person_ref_and_attributes() -> None:
    row = {
        "first_name": "Jane",
        "phone_number": "+35840123456",
        "email_address": "",
        "ref": "crm-1",
        "Tier": "Gold",
        "Empty": "",
    }
    assert imports.optimized_profile(row) == {
        "person": {"first_name": "Jane", "phone_number": "+35840123456"},
        "attributes": [{"name": "Tier", "value": "Gold"}],
        "ref": "crm-1",
    }
    assert imports.batch_operation({"custom_id": "u1", "ref": "r", "plan": "pro"}) == {
        "identifiers": {"custom_id": "u1"},
        "attributes": {"plan": "pro"},
        "ref": "r",
    }
    assert imports.optimove_trigger(
        {"match_id": "m-1", "dedupe_key": "d"}, {"event_generator_id": "g", "topic_key": "t", "send_at": None}
    ) == {
        "event_generator_id": "g",
        "topic_key": "t",
        "dedupe_key": "d",
        "context": {"match_id": "m-1"},
    }


def test_chunk_keys_name_the_file_the_options_and_the_rows(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text("phone_number\n" + "".join(f"+3584{i:08d}\n" for i in range(5)))
    digest = imports.file_digest(path)

    def keys(options: dict, size: int) -> list[str]:
        prefix = imports.key_prefix("optimized", digest, options)
        return [c.key for c in imports.chunks(imports.items(path, imports.optimized_profile), size, prefix)]

    first = keys({"group_id": "g"}, 2)
    assert first == keys({"group_id": "g"}, 2)  # a re-run: the same keys
    assert [k.rsplit("-rows-", 1)[1] for k in first] == ["1-2", "3-4", "5-5"]
    assert not set(first) & set(keys({"group_id": "h"}, 2))  # another group: other keys
    assert all(len(k) <= 255 for k in first)
    path.write_text(path.read_text() + "+358400000099\n")
    assert imports.key_prefix("optimized", imports.file_digest(path), {}) != imports.key_prefix(
        "optimized", digest, {}
    )
    assert imports.count_rows(path, jsonl=False) == 6


def test_an_error_field_names_the_row_of_the_file() -> None:
    chunk = imports.Chunk(1001, 2000, [], "k")
    assert imports.row_of("profiles[3].person.phone_number", chunk) == "row 1004: person.phone_number"
    assert imports.row_of("operations[0]", chunk) == "row 1001"
    assert imports.row_of("group_id", chunk) == "group_id"


def test_jsonl_lines_are_operations_and_a_bad_line_is_named(tmp_path: Path) -> None:
    path = tmp_path / "ops.jsonl"
    path.write_text('{"identifiers": {"custom_id": "a"}}\n\n{"identifiers": {"installation": "i"}}\n[1]\n')
    rows = imports.items(path, lambda op: op, jsonl=True)
    assert next(rows) == {"identifiers": {"custom_id": "a"}}
    assert next(rows) == {"identifiers": {"installation": "i"}}
    with pytest.raises(imports.ImportFileError, match="row 3: not a JSON object"):
        next(rows)


# --- answers and watching -------------------------------------------------------------------------


def test_an_error_answer_is_its_message_and_details() -> None:
    envelope = {
        "error": {
            "code": "validation_failed",
            "message": "Invalid request",
            "details": [{"field": "group_id", "message": "must be a UUID"}],
        }
    }
    error = RelayApiError.from_response(httpx.Response(422, json=envelope))
    assert error.lines() == ["Invalid request (422 validation_failed)", "  group_id: must be a UUID"]
    assert not error.retryable
    gateway = RelayApiError.from_response(httpx.Response(503, text="Service Unavailable"))
    assert gateway.retryable
    assert "Service Unavailable" in gateway.message
    assert RelayApiError.from_response(
        httpx.Response(409, json={"error": {"code": "in_progress", "message": "m"}})
    ).retryable


@pytest.mark.parametrize(
    ("view", "moving", "ok"),
    [
        ({"destination": "optimized", "status": "dispatching", "chunks": {"pending": 3}}, True, True),
        ({"destination": "optimized", "status": "completed", "chunks": {"sent": 3}}, False, True),
        ({"destination": "optimized", "status": "partially_failed", "chunks": {"failed": 1}}, False, False),
        ({"destination": "optimove", "status": "accepted", "chunks": {}}, True, True),
        ({"destination": "optimove", "status": "unknown", "chunks": {}}, False, False),
        ({"destination": "newer", "status": "queued", "chunks": {}}, True, True),
    ],
)
def test_watch_ends_where_the_destination_says_work_stops(view: dict, moving: bool, ok: bool) -> None:
    assert watching.in_progress(view) is moving
    assert watching.succeeded(view) is ok

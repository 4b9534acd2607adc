"""Load a SAM/CloudFormation template and resolve its intrinsic functions locally.

The YAML loader understands CloudFormation's short tags (``!Ref``, ``!GetAtt``, ``!Sub`` ...) and
turns them into their long JSON form (``{"Ref": ...}``, ``{"Fn::GetAtt": [...]}``), so the rest of
the local stack only deals with plain dicts. :class:`Resolver` then evaluates those intrinsics
against the physical values of the locally created resources.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

DEFAULT_ACCOUNT_ID = "123456789012"
DEFAULT_STACK_NAME = "campaign-relay-local"

NO_VALUE = object()
"""Result of ``!Ref AWS::NoValue``: the enclosing key or list item is removed."""

_SHORT_TAGS = {
    "Ref": "Ref",
    "Condition": "Condition",
    "GetAtt": "Fn::GetAtt",
    "Sub": "Fn::Sub",
    "Join": "Fn::Join",
    "Select": "Fn::Select",
    "Split": "Fn::Split",
    "If": "Fn::If",
    "Equals": "Fn::Equals",
    "Not": "Fn::Not",
    "And": "Fn::And",
    "Or": "Fn::Or",
    "FindInMap": "Fn::FindInMap",
    "Base64": "Fn::Base64",
    "Cidr": "Fn::Cidr",
    "GetAZs": "Fn::GetAZs",
    "ImportValue": "Fn::ImportValue",
    "Transform": "Fn::Transform",
    "Length": "Fn::Length",
    "ToJsonString": "Fn::ToJsonString",
}


class TemplateError(Exception):
    """The template cannot be loaded or an intrinsic cannot be resolved locally."""


class UnresolvedReference(TemplateError):
    """An intrinsic refers to something that has no local physical value."""


class _CfnLoader(yaml.SafeLoader):
    """SafeLoader with CloudFormation short tags; no timestamp magic (CFN keeps them strings)."""


# CloudFormation treats unquoted dates as strings (e.g. AWSTemplateFormatVersion: 2010-09-09).
_CfnLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _make_constructor(long_name: str):
    def construct(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
        if isinstance(node, yaml.ScalarNode):
            value: Any = loader.construct_scalar(node)
            if long_name == "Fn::GetAtt":
                logical_id, _, attribute = str(value).partition(".")
                value = [logical_id, attribute]
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        return {long_name: value}

    return construct


for _short, _long in _SHORT_TAGS.items():
    _CfnLoader.add_constructor(f"!{_short}", _make_constructor(_long))


def loads(text: str) -> dict[str, Any]:
    """Parse template text (YAML with short tags, or JSON) into plain dicts."""
    data = yaml.load(text, Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass
    if not isinstance(data, dict):
        raise TemplateError("template is not a mapping")
    return data


def load_template(path: str | Path) -> dict[str, Any]:
    """Load a template file into plain dicts (intrinsics in their long JSON form)."""
    return loads(Path(path).read_text(encoding="utf-8"))


def resources_of_type(template: Mapping[str, Any], *types: str) -> dict[str, dict[str, Any]]:
    """Logical id -> resource for every resource of one of ``types`` (in template order)."""
    return {
        logical_id: resource
        for logical_id, resource in (template.get("Resources") or {}).items()
        if isinstance(resource, dict) and resource.get("Type") in types
    }


def parameter_defaults(template: Mapping[str, Any]) -> dict[str, Any]:
    """Parameter name -> its Default (as a string, like CloudFormation passes it on)."""
    out: dict[str, Any] = {}
    for name, spec in (template.get("Parameters") or {}).items():
        if isinstance(spec, dict) and "Default" in spec:
            default = spec["Default"]
            if isinstance(default, list):
                default = ",".join(str(item) for item in default)
            elif isinstance(default, bool):
                default = "true" if default else "false"
            out[name] = str(default)
    return out


def pseudo_parameters(region: str, account_id: str = DEFAULT_ACCOUNT_ID) -> dict[str, Any]:
    partition = "aws-cn" if region.startswith("cn-") else "aws-us-gov" if "gov" in region else "aws"
    suffix = "amazonaws.com.cn" if partition == "aws-cn" else "amazonaws.com"
    return {
        "AWS::Region": region,
        "AWS::AccountId": account_id,
        "AWS::Partition": partition,
        "AWS::URLSuffix": suffix,
        "AWS::StackName": DEFAULT_STACK_NAME,
        "AWS::StackId": (
            f"arn:{partition}:cloudformation:{region}:{account_id}:stack/{DEFAULT_STACK_NAME}/"
            "00000000-0000-0000-0000-000000000000"
        ),
        "AWS::NotificationARNs": [],
    }


def references(value: Any) -> set[str]:
    """Every name (resource, parameter or pseudo parameter) that ``value`` refers to."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if len(node) == 1:
                (key, arg), *_ = node.items()
                if key == "Ref" and isinstance(arg, str):
                    found.add(arg)
                    return
                if key == "Fn::GetAtt":
                    target = arg.split(".", 1)[0] if isinstance(arg, str) else arg[0]
                    if isinstance(target, str):
                        found.add(target)
                    return
                if key == "Fn::Sub":
                    text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
                    for name in _SUB_VAR.findall(text if isinstance(text, str) else ""):
                        base = name.split(".", 1)[0]
                        if base not in variables:
                            found.add(base)
                    walk(variables)
                    return
            for item in node.values():
                walk(item)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(value)
    return found


_SUB_VAR = re.compile(r"\$\{(?!!)([^}]+)\}")


class Resolver:
    """Evaluates intrinsic functions against local physical values.

    ``refs`` maps a logical id to what ``!Ref`` returns (table name, queue URL ...); ``attrs`` maps
    a logical id to its ``!GetAtt`` attributes. Parameters resolve to their Default (or to
    ``parameters`` when given), pseudo parameters to the local region and a fake account.
    """

    def __init__(
        self,
        template: Mapping[str, Any],
        refs: Mapping[str, Any] | None = None,
        attrs: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        region: str = "us-east-1",
        account_id: str = DEFAULT_ACCOUNT_ID,
        parameters: Mapping[str, Any] | None = None,
    ) -> None:
        self.template = template
        self.refs = dict(refs or {})
        self.attrs = {key: dict(value) for key, value in (attrs or {}).items()}
        self.region = region
        self.account_id = account_id
        self.parameters = {**parameter_defaults(template), **(parameters or {})}
        self.pseudo = pseudo_parameters(region, account_id)
        self._conditions: dict[str, bool] = {}

    # -- public -------------------------------------------------------------------------------

    def resolve(self, value: Any) -> Any:
        """Return ``value`` with every intrinsic evaluated (``AWS::NoValue`` entries removed)."""
        result = self._resolve(value)
        return None if result is NO_VALUE else result

    def ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        if name in self.refs:
            return self.refs[name]
        raise UnresolvedReference(f"!Ref {name}: no local value")

    def get_att(self, logical_id: str, attribute: str) -> Any:
        values = self.attrs.get(logical_id)
        if values is None or attribute not in values:
            raise UnresolvedReference(f"!GetAtt {logical_id}.{attribute}: no local value")
        return values[attribute]

    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            conditions = self.template.get("Conditions") or {}
            if name not in conditions:
                raise TemplateError(f"unknown condition {name}")
            self._conditions[name] = bool(self._resolve(conditions[name]))
        return self._conditions[name]

    # -- evaluation ---------------------------------------------------------------------------

    def _resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            items = [self._resolve(item) for item in value]
            return [item for item in items if item is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (key, arg), *_ = value.items()
            if key == "Ref":
                return self.ref(self._resolve(arg))
            if key == "Condition" and isinstance(arg, str):
                return self.condition(arg)
            if key.startswith("Fn::"):
                handler = getattr(self, "_fn_" + key[4:].lower(), None)
                if handler is None:
                    raise TemplateError(f"{key} is not supported locally")
                return handler(arg)
        out = {}
        for key, item in value.items():
            resolved = self._resolve(item)
            if resolved is not NO_VALUE:
                out[key] = resolved
        return out

    def _fn_getatt(self, arg: Any) -> Any:
        if isinstance(arg, str):
            logical_id, _, attribute = arg.partition(".")
        else:
            logical_id, attribute = self._resolve(arg[0]), self._resolve(arg[1])
        return self.get_att(logical_id, attribute)

    def _fn_sub(self, arg: Any) -> str:
        if isinstance(arg, str):
            text, variables = arg, {}
        else:
            text, variables = arg[0], {k: self._resolve(v) for k, v in (arg[1] or {}).items()}

        def replace(match: re.Match[str]) -> str:
            name = match.group(1).strip()
            if name in variables:
                return str(variables[name])
            if "." in name and not name.startswith("AWS::"):
                logical_id, attribute = name.split(".", 1)
                return str(self.get_att(logical_id, attribute))
            return str(self.ref(name))

        return _SUB_VAR.sub(replace, text).replace("${!", "${")

    def _fn_join(self, arg: Any) -> str:
        delimiter, items = arg[0], self._resolve(arg[1])
        return str(delimiter).join(str(item) for item in items)

    def _fn_select(self, arg: Any) -> Any:
        index, items = int(self._resolve(arg[0])), self._resolve(arg[1])
        return items[index]

    def _fn_split(self, arg: Any) -> list[str]:
        return str(self._resolve(arg[1])).split(arg[0])

    def _fn_if(self, arg: Any) -> Any:
        name, when_true, when_false = arg
        return self._resolve(when_true if self.condition(name) else when_false)

    def _fn_equals(self, arg: Any) -> bool:
        left, right = (self._resolve(item) for item in arg)
        return str(left) == str(right)

    def _fn_not(self, arg: Any) -> bool:
        return not self._resolve(arg[0])

    def _fn_and(self, arg: Any) -> bool:
        return all(self._resolve(item) for item in arg)

    def _fn_or(self, arg: Any) -> bool:
        return any(self._resolve(item) for item in arg)

    def _fn_findinmap(self, arg: Any) -> Any:
        name, top, second = (self._resolve(item) for item in arg[:3])
        return (self.template.get("Mappings") or {})[name][top][second]

    def _fn_base64(self, arg: Any) -> str:
        return base64.b64encode(str(self._resolve(arg)).encode()).decode()

    def _fn_getazs(self, arg: Any) -> list[str]:
        region = self._resolve(arg) or self.region
        return [f"{region}{suffix}" for suffix in "abc"]

    def _fn_length(self, arg: Any) -> int:
        return len(self._resolve(arg))

    def _fn_tojsonstring(self, arg: Any) -> str:
        return json.dumps(self._resolve(arg), separators=(",", ":"))

"""What the executor needs of the component store (``ComponentSource``), and parameter validation by spec."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any, Protocol

from mesh.errors import ConfigurationError
from mesh.home import NodeHome
from services.executor.api import Component
from services.executor.errors import BAD_PARAMS, JobCheckError


class InstalledComponent(Protocol):
    """One installed component: its BFIA spec (parameters, roles, inputs...), artifact digest and enabled flag."""

    @property
    def spec(self) -> Mapping[str, Any]: ...

    @property
    def digest(self) -> bytes: ...

    @property
    def enabled(self) -> bool: ...

    def load(self) -> Component: ...


class ComponentSource(Protocol):
    """Where installed components come from: services.components.ComponentStore in a node."""

    def installed(self, code: str, version: str) -> InstalledComponent | None: ...


_TYPES: dict[str, tuple[type, ...]] = {
    "int": (int,),
    "integer": (int,),
    "float": (int, float),
    "number": (int, float),
    "string": (str,),
    "bool": (bool,),
    "boolean": (bool,),
}


def validate_params(spec: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """Parameters checked against the spec's ``parameters`` (type, and min/max/choices validators), defaults filled in.

    Raises JobCheckError(BAD_PARAMS) naming the first bad parameter.
    """
    declared = {p["name"]: p for p in spec.get("parameters", [])}
    unknown = sorted(set(params) - set(declared))
    if unknown:
        raise JobCheckError(BAD_PARAMS, f"unknown parameter {unknown[0]!r}")
    out: dict[str, Any] = {}
    for name, p in declared.items():
        if name not in params:
            if "default" not in p:
                raise JobCheckError(BAD_PARAMS, f"parameter {name!r} is required")
            out[name] = p["default"]
            continue
        value = params[name]
        allowed = _TYPES.get(str(p.get("type", "string")), (object,))
        if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
            raise JobCheckError(BAD_PARAMS, f"parameter {name!r} must be {p.get('type')}, not {value!r}")
        rule = p.get("validator", {}) or {}
        if ("min" in rule and value < rule["min"]) or ("max" in rule and value > rule["max"]):
            raise JobCheckError(
                BAD_PARAMS, f"parameter {name!r} = {value} is outside [{rule.get('min')}, {rule.get('max')}]"
            )
        if "choices" in rule and value not in rule["choices"]:
            raise JobCheckError(BAD_PARAMS, f"parameter {name!r} = {value!r} is not one of {rule['choices']}")
        out[name] = value
    return out


def node_components(home: NodeHome) -> ComponentSource:
    """The component store of a node home: services.components.ComponentStore, wired in by the lead's merge.

    It is looked up by name so this package builds before the store lands; without it, the
    commands that need an installation (propose, accept, a running executor) refuse in one line.
    """
    try:
        module = importlib.import_module("services.components.store")
    except ImportError:
        raise ConfigurationError(
            "this build has no component store (services.components); install components first"
        ) from None
    source: ComponentSource = module.ComponentStore(home)
    return source

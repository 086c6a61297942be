"""The component spec (a BFIA component self-description) and validation of a job's parameters against it."""

from __future__ import annotations

import json
import math
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from services.components.errors import InvalidSpecError, ParamsError

CODE = r"^[a-z][a-z0-9_]{0,62}$"
VERSION = r"^[0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.-]+)?$"
ROLES = ("guest", "host", "arbiter", "aggregator")
ParamType = Literal["int", "integer", "float", "number", "bool", "boolean", "string"]
_INTERVAL = re.compile(r"^([\[(])\s*([^,\s]*)\s*,\s*([^,\s]*)\s*([\])])$")


class Parameter(BaseModel):
    """One hyper-parameter (BFIA inputParam): its type, whether it may be left out, its default and validator.

    Validators: an interval ``(lo,hi)``, ``[lo,hi]`` or mixed (an empty bound is unbounded) for numbers;
    ``regular:<regex>`` (the whole string must match) for strings; ``enum:a|b|c`` for any type.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,62}$")]
    type: ParamType
    description: str = ""
    optional: bool = True
    default: Any = None
    validator: str = ""

    @model_validator(mode="after")
    def _default_fits(self) -> Parameter:
        if self.validator:
            _check_validator(self.validator, self.type)
        if self.default is not None:
            problem = check_value(self, self.default)
            if problem is not None:
                raise ValueError(f"default of {self.name}: {problem}")
        return self


class DataPort(BaseModel):
    """A data input or output (BFIA inputData / outputData)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,62}$")]
    category: Literal["dataset", "training_set", "test_set", "model", "report", "metric"]
    description: str = ""
    formats: tuple[str, ...] = ("csv",)
    #: the roles that bring (or get) this data; empty means every role
    roles: tuple[str, ...] = ()


class ComponentSpec(BaseModel):
    """What a component is, as every party sees it before running it: published on ``components`` (§15.1)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    code: Annotated[str, Field(pattern=CODE)]
    version: Annotated[str, Field(pattern=VERSION)]
    title: str = ""
    description: str = ""
    category: Annotated[str, Field(min_length=1, max_length=64)]
    developer: Annotated[str, Field(min_length=1, max_length=128)]
    engine: Annotated[str, Field(min_length=1, max_length=64)]
    roles: Annotated[tuple[str, ...], Field(min_length=1)]
    parameters: tuple[Parameter, ...] = ()
    inputs: tuple[DataPort, ...] = ()
    outputs: tuple[DataPort, ...] = ()
    #: "module:Class", the module relative to the component's folder (a Python package)
    entrypoint: Annotated[
        str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$")
    ]

    @field_validator("roles")
    @classmethod
    def _known_roles(cls, roles: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [r for r in roles if r not in ROLES]
        if unknown or len(set(roles)) != len(roles):
            raise ValueError(f"roles must be distinct, among {', '.join(ROLES)} (got {list(roles)})")
        return roles

    @model_validator(mode="after")
    def _names_unique(self) -> ComponentSpec:
        for what, items in (("parameter", self.parameters), ("input", self.inputs), ("output", self.outputs)):
            names = [i.name for i in items]
            if len(set(names)) != len(names):
                raise ValueError(f"{what} names must be unique (got {names})")
        for port in (*self.inputs, *self.outputs):
            if not set(port.roles) <= set(self.roles):
                raise ValueError(f"data {port.name} names roles the component does not have")
        return self

    @property
    def ref(self) -> str:
        return f"{self.code}:{self.version}"

    def canonical_json(self) -> str:
        """The spec as published: keys sorted, no insignificant space, defaults written out."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def parse_spec(raw: str | bytes | dict[str, Any]) -> ComponentSpec:
    """A spec from JSON text or a decoded object, or InvalidSpecError naming what is wrong."""
    try:
        if isinstance(raw, dict):
            return ComponentSpec.model_validate(raw)
        return ComponentSpec.model_validate_json(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'spec'}: {e['msg']}" for e in exc.errors())
        raise InvalidSpecError(f"component spec: {problems}") from None


def _check_validator(validator: str, kind: str) -> None:
    if validator.startswith("regular:"):
        if kind != "string":
            raise ValueError("a regular: validator applies to strings only")
        re.compile(validator.removeprefix("regular:"))
    elif validator.startswith("enum:"):
        if not validator.removeprefix("enum:"):
            raise ValueError("an enum: validator lists at least one value")
    elif (m := _INTERVAL.match(validator)) is not None:
        if kind not in ("int", "integer", "float", "number"):
            raise ValueError("an interval validator applies to numbers only")
        for bound in (m.group(2), m.group(3)):
            if bound:
                float(bound)
    else:
        raise ValueError(f"validator {validator!r}: use (lo,hi) / [lo,hi], regular:<regex> or enum:a|b")


def _typed(kind: str, value: Any) -> tuple[Any, str | None]:
    """``value`` as the parameter type, or why it is not (a bool is not a number; an int is a float)."""
    if kind in ("int", "integer"):
        if isinstance(value, bool) or not isinstance(value, int):
            return value, f"expected an integer, got {value!r}"
    elif kind in ("float", "number"):
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            return value, f"expected a finite number, got {value!r}"
        value = float(value) if kind == "float" else value
    elif kind in ("bool", "boolean"):
        if not isinstance(value, bool):
            return value, f"expected true or false, got {value!r}"
    elif not isinstance(value, str):
        return value, f"expected a string, got {value!r}"
    return value, None


def check_value(param: Parameter, value: Any) -> str | None:
    """Why ``value`` does not fit ``param``, or None."""
    value, problem = _typed(param.type, value)
    if problem is not None or not param.validator:
        return problem
    rule = param.validator
    if rule.startswith("regular:"):
        pattern = rule.removeprefix("regular:")
        return None if re.fullmatch(pattern, value) else f"{value!r} does not match {pattern}"
    if rule.startswith("enum:"):
        allowed = rule.removeprefix("enum:").split("|")
        return (
            None
            if str(value).lower() in [a.lower() for a in allowed] or str(value) in allowed
            else (f"{value!r} is not one of {', '.join(allowed)}")
        )
    m = _INTERVAL.match(rule)
    assert m is not None  # checked when the spec was parsed
    lo, hi = (float(b) if b else None for b in (m.group(2), m.group(3)))
    below = lo is not None and (value < lo if m.group(1) == "[" else value <= lo)
    above = hi is not None and (value > hi if m.group(4) == "]" else value >= hi)
    return f"{value!r} is outside {rule}" if below or above else None


def validate_params(spec: ComponentSpec, params: dict[str, Any]) -> dict[str, Any]:
    """``params`` checked against ``spec``'s parameter schema, with defaults filled in.

    Raises ParamsError listing every bad parameter at once: unknown names, missing required ones,
    wrong types, values outside their validator.
    """
    declared = {p.name: p for p in spec.parameters}
    problems = {name: "not a parameter of this component" for name in params if name not in declared}
    result: dict[str, Any] = {}
    for name, param in declared.items():
        if name not in params:
            if param.default is not None:
                result[name] = _typed(param.type, param.default)[0]
            elif not param.optional:
                problems[name] = "required"
            continue
        problem = check_value(param, params[name])
        if problem is not None:
            problems[name] = problem
        else:
            result[name] = _typed(param.type, params[name])[0]
    if problems:
        raise ParamsError(spec.ref, problems)
    return result

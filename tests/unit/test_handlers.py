"""Every handler declares its payload as the TypedDicts of what it handles; a wrong declaration is refused."""

from __future__ import annotations

import importlib
import inspect
import typing
from typing import Any

import pytest

from mesh import events
from mesh.service import Event, Service, check_handler, handles

#: The modules that define services (imported so that their Service subclasses exist).
SERVICE_MODULES = (
    "accel.client",
    "bench.bus",
    "services.accel.service",
    "services.catalog.service",
    "services.components.service",
    "services.evidence.service",
    "services.executor.service",
    "services.registry.service",
)


def _subclasses(cls: type) -> set[type]:
    found = set(cls.__subclasses__())
    for sub in list(found):
        found |= _subclasses(sub)
    return found


def _handlers() -> list[tuple[str, Any, tuple[str, ...]]]:
    for name in SERVICE_MODULES:
        importlib.import_module(name)
    out = []
    for cls in sorted(_subclasses(Service), key=lambda c: c.__qualname__):
        if cls.__module__ not in SERVICE_MODULES:
            continue  # e.g. this module's own
        for attr, fn in inspect.getmembers(cls, inspect.isfunction):
            kinds = getattr(fn, "__interfed_handles__", ())
            if kinds and fn.__qualname__.startswith(cls.__qualname__ + "."):
                out.append((f"{cls.__qualname__}.{attr}", fn, kinds))
    return out


def test_every_handler_of_the_services_declares_exactly_the_records_it_handles() -> None:
    handlers = _handlers()
    assert handlers, "no handlers found"
    for where, fn, kinds in handlers:
        check_handler(fn, kinds)  # raises TypeError naming the handler
        event = typing.get_type_hints(fn)[next(p for p in inspect.signature(fn).parameters if p != "self")]
        assert typing.get_origin(event) is Event, f"{where} takes {event}, not Event[<its records>]"
        assert typing.get_args(event)[0] is not Any, f"{where} declares no payload"


class _Wrong(Service):
    @handles(events.JOIN_APPROVED)
    async def on_approved(self, ev: Event[events.JoinRejected]) -> None:
        """Declares another record than it handles."""

    @handles(events.JOIN_APPROVED, events.JOIN_REJECTED)
    async def on_two(self, ev: Event[events.JoinApproved]) -> None:
        """Declares one of the two records it handles."""

    @handles("interfed.nowhere.Unknown")
    async def on_unknown(self, ev: Event[events.JoinApproved]) -> None:
        """Handles a type no schema defines."""

    @handles(events.JOIN_APPROVED)
    async def on_anything(self, ev: Event[Any]) -> None:
        """Declares nothing: not checked."""

    @handles(events.JOIN_APPROVED, events.JOIN_REJECTED)
    async def on_both(self, ev: Event[events.JoinRejected | events.JoinApproved]) -> None:
        """Declares both, in any order."""


@pytest.mark.parametrize(
    ("method", "message"),
    [
        ("on_approved", r"_Wrong.on_approved takes Event\[JoinRejected\] but handles interfed.registry.JoinApproved"),
        ("on_two", r"takes Event\[JoinApproved\] but handles interfed.registry.JoinApproved, interfed.registry.JoinRe"),
        ("on_unknown", r"handles interfed.nowhere.Unknown, which no schema defines"),
    ],
)
def test_a_declaration_other_than_the_handled_records_is_refused(method: str, message: str) -> None:
    fn = getattr(_Wrong, method)
    with pytest.raises(TypeError, match=message):
        check_handler(fn, fn.__interfed_handles__)


@pytest.mark.parametrize("method", ["on_anything", "on_both"])
def test_a_matching_or_absent_declaration_passes(method: str) -> None:
    fn = getattr(_Wrong, method)
    check_handler(fn, fn.__interfed_handles__)

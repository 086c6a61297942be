"""``interfed accel``: run a node's accelerator service, and make or list the Paillier keys it owns."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from mesh.errors import ConfigurationError

if TYPE_CHECKING:
    from mesh.home import NodeHome

app = typer.Typer(help="The accelerator: Paillier on vectors as a service of a node.", no_args_is_help=True)
out = Console(highlight=False)

HomeOpt = Annotated[Path, typer.Option("--home", envvar="INTERFED_HOME", help="the node's home directory")]


def _home(path: Path, log_json: bool = False) -> NodeHome:
    # The Paillier arithmetic, the Kafka client and the cryptography load in the commands: a quick start.
    from mesh import logs
    from mesh.home import NodeHome

    home = NodeHome(path)
    cfg = home.config()
    logs.configure(path=home.log_path / f"{cfg.node_id}-accel.jsonl", to_stderr=log_json)
    return home


@app.command("up")
def accel_up(
    home: HomeOpt,
    bootstrap: Annotated[
        str | None, typer.Option("--bootstrap", envvar="INTERFED_BOOTSTRAP", help="Kafka bootstrap address host:port")
    ] = None,
    workers: Annotated[
        int, typer.Option("--workers", min=0, max=256, help="worker processes; 0 means one per core")
    ] = 0,
    log_json: Annotated[bool, typer.Option("--log-json", help="print the JSON log to stderr")] = False,
) -> None:
    """Run one instance of the node's accelerator until Ctrl-C; start more (anywhere) to share the load."""
    from accel.keystore import KeyStore
    from mesh.node import connect, open_context, run_services, stop_on_signals
    from mesh.settings import load_settings
    from services.accel.service import AccelService

    node = _home(home, log_json)
    settings = load_settings(bootstrap=bootstrap)
    if not settings.bootstrap:
        raise ConfigurationError(
            "no broker given: pass --bootstrap HOST:PORT or set INTERFED_BOOTSTRAP (the broker the node runs on)"
        )
    count = workers or os.cpu_count() or 1
    keys = KeyStore.of_home(node.path)

    async def go(address: str) -> None:
        stop = asyncio.Event()
        stop_on_signals(stop)
        async with connect(settings, address, node, applicant=False) as bus:
            service = AccelService(open_context(node, bus, settings), workers=count, keys=keys)
            out.print(
                f"accelerator of [bold]{service.me}[/] up on {address}: {count} worker process(es), "
                f"{len(keys)} key(s) owned (decryption for {service.me} only), instance {service.instance}; "
                f"logs in {node.log_path}; Ctrl-C stops"
            )
            await run_services([service], stop)

    asyncio.run(go(settings.bootstrap))


@app.command("keygen")
def accel_keygen(
    home: HomeOpt,
    bits: Annotated[int, typer.Option("--bits", min=512, max=8192, help="modulus size (even)")] = 2048,
    safe_primes: Annotated[bool, typer.Option("--safe-primes", help="p = 2p'+1 (slower to make)")] = False,
    djn: Annotated[bool, typer.Option("--djn/--no-djn", help="draw a DJN base published with the key")] = True,
) -> None:
    """Make a Paillier key pair this node owns (kept in <home>/accel/keys, mode 0600)."""
    from accel.keystore import KeyStore

    node = _home(home)
    if bits % 2:
        raise ConfigurationError("--bits must be even")
    with out.status(f"generating a {bits}-bit Paillier key pair..."):
        owned = KeyStore.of_home(node.path).generate(bits, safe_primes=safe_primes, djn=djn)
    out.print(f"key [bold]{owned.key_id}[/] ({bits} bits) kept in {node.path / 'accel' / 'keys'}")


@app.command("keys")
def accel_keys(home: HomeOpt) -> None:
    """List the Paillier keys this node owns."""
    from rich.table import Table

    from accel.keystore import KeyStore

    node = _home(home)
    store = KeyStore.of_home(node.path)
    table = Table(title=f"Paillier keys of {node.config().node_id}")
    for column in ("key id", "bits", "DJN base"):
        table.add_column(column)
    for key_ref in store.ids():
        owned = store.get(key_ref)
        assert owned is not None
        table.add_row(key_ref, str(owned.published.public_key.bits), "yes" if owned.published.djn_base else "no")
    out.print(table)

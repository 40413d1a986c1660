"""`prfaas certs dev-ca`: a deployment CA and one certificate per node, for the KV links' mutual TLS.

    prfaas certs dev-ca --out tls/ --node prfaas-0=10.0.1.5 --node pd-0=10.0.2.7,pd0.dc2.example
    prfaas certs dev-ca --out tls/ --config deploy.toml      # every node of the config, with its host

Writes ca.pem, ca-key.pem (to issue more later; keep it off the nodes), `<node>.pem` and `<node>-key.pem`
(keys 0600) and prints the `[transport]` lines that use them. Each node needs ca.pem and its own pair.
For production, any CA works: see docs/security-tls.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from prfaas.core.errors import ConfigError
from prfaas.transport.tls import DEFAULT_VALID_DAYS, NodeCert, write_dev_ca


def register(app: typer.Typer) -> None:
    certs = typer.Typer(no_args_is_help=True, help="TLS material for the KV transport.")
    certs.command("dev-ca", help="Make a deployment CA and a certificate per node (mutual TLS of the KV links).")(
        dev_ca_cmd)
    app.add_typer(certs, name="certs")


def parse_node_spec(spec: str) -> NodeCert:
    """`NAME` or `NAME=HOST[,HOST...]` (DNS names or IP addresses the node is dialled at)."""
    name, _, hosts = spec.partition("=")
    if not name:
        raise ConfigError(f"--node {spec!r}: expected NAME or NAME=HOST[,HOST...]")
    return NodeCert(name, tuple(h for h in hosts.split(",") if h))


def config_nodes(config: Path) -> list[NodeCert]:
    from prfaas.serve.config import load_config

    return [NodeCert(n.name, (n.host,)) for n in load_config(config).nodes]


def transport_lines(out: Path) -> str:
    return (f'[transport]\ntls = "on"\ntls_ca_file = "{out / "ca.pem"}"\n'
            f'tls_cert_file = "{out / "{node}.pem"}"\ntls_key_file = "{out / "{node}-key.pem"}"')


def dev_ca_cmd(
    out: Annotated[Path, typer.Option(help="Folder for ca.pem and the node files (created 0700).")],
    node: Annotated[list[str] | None, typer.Option(help="NAME or NAME=HOST[,HOST...]; repeat per node.")] = None,
    config: Annotated[Path | None, typer.Option(help="Take every node (name and host) from this TOML.")] = None,
    valid_days: Annotated[int, typer.Option(min=1, help="Validity of the CA and the certificates.")]
    = DEFAULT_VALID_DAYS,
) -> None:
    nodes = [parse_node_spec(s) for s in node or []] + (config_nodes(config) if config is not None else [])
    if not nodes:
        raise ConfigError("prfaas certs dev-ca needs --node NAME (repeatable) or --config FILE")
    out = out.resolve()
    write_dev_ca(out, nodes, valid_days=valid_days)
    typer.echo(f"wrote {out / 'ca.pem'}, {out / 'ca-key.pem'} and a certificate + key for "
               f"{', '.join(n.name for n in nodes)}\n\n{transport_lines(out)}")

"""TLS of a deployment's KV links: which files a node uses, its SSL contexts, and `prfaas up`'s per-run dev CA.

    cfg = prepare_tls(cfg, run_dir)            # launcher, before config.json is written: dev CA if none given
    ctx = sender_context(cfg.transport, name)  # None when transport.tls = "off"

Every KV link of a deployment uses TLS when `transport.tls = "on"` (the default): PrfaaS -> PD-D across
sites, and PD-P -> PD-D inside the PD cluster too, because a decode node has one KV listener and one that
accepted plaintext from local peers would accept it from anyone who can reach its port. `tls = "off"` is
for links the operator already encrypts (IPsec, WireGuard, a private interconnect); nodes then log a
warning at start. See docs/security-tls.md.
"""

from __future__ import annotations

import logging
import ssl
from pathlib import Path

import msgspec

from prfaas.core.errors import ConfigError
from prfaas.serve.config import DeployConfig, TlsMode, TransportSection
from prfaas.transport.tls import NodeCert, TlsFiles, check_files, client_context, server_context, write_dev_ca

_log = logging.getLogger(__name__)
DEV_CA_DIR_NAME = "tls"
NODE_PLACEHOLDER = "{node}"
PLAINTEXT_WARNING = ("transport.tls = \"off\": KV state (it reveals the prompt) crosses the network in plaintext; "
                     "only safe on links the operator already encrypts")


def has_tls_files(t: TransportSection) -> bool:
    return t.tls_ca_file is not None


def node_tls_files(t: TransportSection, node_name: str) -> TlsFiles:
    """The node's files; `{node}` in tls_cert_file / tls_key_file is its name. ConfigError when unset."""
    if t.tls_ca_file is None or t.tls_cert_file is None or t.tls_key_file is None:
        raise ConfigError("transport.tls is \"on\" but tls_ca_file, tls_cert_file and tls_key_file are not set: "
                          "make them with `prfaas certs dev-ca --config FILE --out DIR` (or your CA), or set "
                          "transport.tls = \"off\" on links that are already encrypted")
    return TlsFiles(Path(t.tls_ca_file), Path(t.tls_cert_file.replace(NODE_PLACEHOLDER, node_name)),
                    Path(t.tls_key_file.replace(NODE_PLACEHOLDER, node_name)))


def _files_if_on(t: TransportSection, node_name: str) -> TlsFiles | None:
    if t.tls is TlsMode.OFF:
        _log.warning(PLAINTEXT_WARNING)
        return None
    files = node_tls_files(t, node_name)
    check_files(files, node_name)
    return files


def sender_context(t: TransportSection, node_name: str) -> ssl.SSLContext | None:
    files = _files_if_on(t, node_name)
    return client_context(files) if files is not None else None


def receiver_context(t: TransportSection, node_name: str) -> ssl.SSLContext | None:
    files = _files_if_on(t, node_name)
    return server_context(files) if files is not None else None


def prepare_tls(cfg: DeployConfig, run_dir: Path) -> DeployConfig:
    """Launcher step before any process starts. TLS on without files: a fresh dev CA in run_dir/tls (no CA key
    kept) and the config pointing at it. TLS on with files: every node's files must exist (ConfigError)."""
    t = cfg.transport
    if t.tls is TlsMode.OFF:
        _log.warning(PLAINTEXT_WARNING)
        return cfg
    if has_tls_files(t):
        for node in cfg.nodes:
            check_files(node_tls_files(t, node.name), node.name)
        return cfg
    out = (run_dir / DEV_CA_DIR_NAME).resolve()
    write_dev_ca(out, [NodeCert(n.name, (n.host,)) for n in cfg.nodes], keep_ca_key=False)
    transport = msgspec.structs.replace(t, tls_ca_file=str(out / "ca.pem"),
                                        tls_cert_file=str(out / f"{NODE_PLACEHOLDER}.pem"),
                                        tls_key_file=str(out / f"{NODE_PLACEHOLDER}-key.pem"))
    return msgspec.structs.replace(cfg, transport=transport)

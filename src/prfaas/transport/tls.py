"""TLS for the KV transport: a deployment CA, per-node certificates, and the two SSL contexts.

    files = write_dev_ca(Path("tls"), [NodeCert("prfaas-0"), NodeCert("pd-1", ("10.0.0.7",))])
    receiver_ctx = server_context(files["pd-1"])    # ReceiverConfig(ssl_context=...)
    sender_ctx = client_context(files["prfaas-0"])  # SenderConfig(ssl_context=...)

Mutual TLS: both ends present a certificate signed by the deployment CA, and that CA is the only trust
root (the system store is never loaded), so a peer with a certificate from any other CA is refused
during the handshake. TLS 1.3 only; the receiver requires a client certificate; the sender checks the
receiver's certificate against the host it dials (node certificates carry the node name, localhost,
127.0.0.1, ::1 and any extra hosts as SANs). The HMAC challenge-response of `auth` still runs inside
the TLS channel (defence in depth: a stolen node key without the deployment secret gets nowhere).

Keys are ECDSA P-256, written with mode 0600 at creation (os.open), never chmod-ed afterwards.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from prfaas.core.errors import ConfigError

CA_FILE_NAME = "ca.pem"
CA_KEY_FILE_NAME = "ca-key.pem"
DEFAULT_VALID_DAYS = 365
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
_CLOCK_SKEW = datetime.timedelta(minutes=5)
_FILE_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")

PrivateKey = ec.EllipticCurvePrivateKey


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """One node's TLS material: the deployment CA (trust root), its own certificate and private key."""

    ca_file: Path
    cert_file: Path
    key_file: Path


@dataclass(frozen=True, slots=True)
class NodeCert:
    """A node to issue a certificate for: its name (also a DNS SAN) and extra hosts (DNS names or IPs)."""

    name: str
    hosts: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CertAuthority:
    cert: x509.Certificate
    key: PrivateKey


def node_file_names(node_name: str) -> tuple[str, str]:
    """(certificate, key) file names of a node inside a cert directory: `<node>.pem`, `<node>-key.pem`."""
    return f"{node_name}.pem", f"{node_name}-key.pem"


# -- certificates --------------------------------------------------------------------------------------


def _validity(valid_days: int) -> tuple[datetime.datetime, datetime.datetime]:
    now = datetime.datetime.now(datetime.UTC)
    return now - _CLOCK_SKEW, now + datetime.timedelta(days=valid_days)


def generate_ca(common_name: str = "prfaas deployment CA", valid_days: int = DEFAULT_VALID_DAYS) -> CertAuthority:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    not_before, not_after = _validity(valid_days)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(not_before).not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False),
                           critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return CertAuthority(cert, key)


def _san_entry(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def subject_alt_names(node: NodeCert) -> list[str]:
    """The node name, the loopback names and the extra hosts, deduplicated in that order."""
    return list(dict.fromkeys([node.name, *LOOPBACK_HOSTS, *node.hosts]))


def issue_node_cert(ca: CertAuthority, node: NodeCert,
                    valid_days: int = DEFAULT_VALID_DAYS) -> tuple[x509.Certificate, PrivateKey]:
    """A leaf certificate usable as both TLS server (receiver) and TLS client (sender)."""
    key = ec.generate_private_key(ec.SECP256R1())
    not_before, not_after = _validity(valid_days)
    sans = x509.SubjectAlternativeName([_san_entry(h) for h in subject_alt_names(node)])
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, node.name)]))
            .issuer_name(ca.cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(not_before).not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(sans, critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                  ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
                           critical=False)
            .sign(ca.key, hashes.SHA256()))
    return cert, key


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


# -- files ---------------------------------------------------------------------------------------------


def write_private_file(path: Path, data: bytes) -> None:
    """Write `data` readable by the owner only: created 0600 under a temporary name, then renamed over `path`
    (an existing file's wider mode is never inherited; nothing is chmod-ed after the fact)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_dev_ca(out_dir: Path, nodes: Sequence[NodeCert], *, keep_ca_key: bool = True,
                 valid_days: int = DEFAULT_VALID_DAYS) -> dict[str, TlsFiles]:
    """A fresh CA and one certificate per node under `out_dir` (created 0700 if missing): ca.pem, optionally
    ca-key.pem (to issue more certificates later), `<node>.pem` and `<node>-key.pem`. Returns each node's files."""
    names = [n.name for n in nodes]
    if len(set(names)) != len(names):
        raise ConfigError(f"duplicate node names in {names}")
    for name in names:
        if not _FILE_SAFE_NAME.fullmatch(name):
            raise ConfigError(f"node name {name!r} cannot name a certificate file (letters, digits, '.', '_', '-')")
    out_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    ca = generate_ca(valid_days=valid_days)
    ca_file = out_dir / CA_FILE_NAME
    ca_file.write_bytes(cert_pem(ca.cert))
    if keep_ca_key:
        write_private_file(out_dir / CA_KEY_FILE_NAME, key_pem(ca.key))
    files: dict[str, TlsFiles] = {}
    for node in nodes:
        cert, key = issue_node_cert(ca, node, valid_days)
        cert_name, key_name = node_file_names(node.name)
        (out_dir / cert_name).write_bytes(cert_pem(cert))
        write_private_file(out_dir / key_name, key_pem(key))
        files[node.name] = TlsFiles(ca_file, out_dir / cert_name, out_dir / key_name)
    return files


def check_files(files: TlsFiles, node_name: str) -> None:
    """ConfigError (one line) when a file is missing or unreadable; reads nothing else."""
    for what, path in (("tls_ca_file", files.ca_file), ("tls_cert_file", files.cert_file),
                       ("tls_key_file", files.key_file)):
        if not path.is_file() or not os.access(path, os.R_OK):
            raise ConfigError(f"transport.{what} for node {node_name!r}: {path} is missing or unreadable "
                              "(generate one with `prfaas certs dev-ca`, or set transport.tls = \"off\")")


# -- SSL contexts --------------------------------------------------------------------------------------


def _context(protocol: int, files: TlsFiles) -> ssl.SSLContext:
    context = ssl.SSLContext(protocol)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.verify_mode = ssl.CERT_REQUIRED
    try:
        context.load_verify_locations(cafile=str(files.ca_file))  # the deployment CA is the only trust root
        context.load_cert_chain(str(files.cert_file), str(files.key_file))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load TLS files ({files.cert_file}, {files.key_file}, CA {files.ca_file}): "
                          f"{exc}") from None
    return context


def server_context(files: TlsFiles) -> ssl.SSLContext:
    """The receiver's context: TLS 1.3, a client certificate signed by the deployment CA required."""
    context = _context(ssl.PROTOCOL_TLS_SERVER, files)
    # NOTE(tls): no session tickets. They are post-handshake messages, and with none the only records after
    # the handshake are application data, so a connection's reader and writer threads never both drive
    # OpenSSL's handshake state machine.
    context.num_tickets = 0
    return context


def client_context(files: TlsFiles) -> ssl.SSLContext:
    """The sender's context: TLS 1.3, the receiver's certificate checked against the deployment CA and host."""
    context = _context(ssl.PROTOCOL_TLS_CLIENT, files)
    context.check_hostname = True
    return context

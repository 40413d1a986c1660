"""`prfaas certs dev-ca`: files, hosts in the certificates, owner-only keys, printed config, one-line errors."""

from __future__ import annotations

import ipaddress
import stat
from pathlib import Path

import pytest
from cryptography import x509

from prfaas.cli import main


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_dev_ca_for_named_nodes_with_hosts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "tls"
    code, stdout, err = run_cli(["certs", "dev-ca", "--out", str(out), "--node", "prfaas-0=10.0.1.5,p0.dc1.example",
                                 "--node", "pd-1"], capsys)
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["ca-key.pem", "ca.pem", "pd-1-key.pem", "pd-1.pem",
                                                     "prfaas-0-key.pem", "prfaas-0.pem"]
    assert {stat.S_IMODE((out / n).stat().st_mode) for n in ("ca-key.pem", "pd-1-key.pem", "prfaas-0-key.pem")} \
        == {0o600}
    sans = x509.load_pem_x509_certificate((out / "prfaas-0.pem").read_bytes()).extensions \
        .get_extension_for_class(x509.SubjectAlternativeName).value
    assert "p0.dc1.example" in sans.get_values_for_type(x509.DNSName)
    assert ipaddress.ip_address("10.0.1.5") in sans.get_values_for_type(x509.IPAddress)
    assert f'tls_cert_file = "{out.resolve()}/{{node}}.pem"' in stdout


def test_dev_ca_without_nodes_or_with_a_path_as_name_is_a_one_line_error(tmp_path: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    for args in (["--out", str(tmp_path / "a")], ["--out", str(tmp_path / "b"), "--node", "../x"]):
        code, _, err = run_cli(["certs", "dev-ca", *args], capsys)
        assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "b").exists() and not (tmp_path / "x.pem").exists()

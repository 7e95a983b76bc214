"""A private CA and a server certificate for 127.0.0.1/localhost, made with ``cryptography``.

The CA (key + certificate) is created once per TLS directory and reused, so that several
sandbox processes sharing the directory hand out the same ``ca.pem``; creation is atomic
(hard link of a finished temp file), so concurrent starts cannot mix two CAs. Each server
start issues a fresh leaf certificate signed by that CA. Clients trust ``ca.pem`` explicitly
(``requests`` ``verify=ca_path``); nothing here turns verification off.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_BUNDLE = "ca-key-and-cert.pem"  # private: CA key + cert (0600)
CA_CERT = "ca.pem"  # public: what clients trust


@dataclass
class TLSFiles:
    ca_path: Path
    cert_path: Path
    key_path: Path

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(str(self.cert_path), str(self.key_path))
        return ctx


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


def _new_ca() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "RetailPulse sandbox"),
                      x509.NameAttribute(NameOID.COMMON_NAME, "RetailPulse sandbox local CA")])
    now = _now()
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()) + cert.public_bytes(serialization.Encoding.PEM)


def _load_or_create_ca(tls_dir: Path) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    tls_dir.mkdir(parents=True, exist_ok=True)
    bundle = tls_dir / CA_BUNDLE
    for _ in range(2):
        if bundle.exists():
            data = bundle.read_bytes()
            try:
                key = serialization.load_pem_private_key(data, password=None)
                cert = x509.load_pem_x509_certificate(data)
                if cert.not_valid_after_utc > _now() + dt.timedelta(days=30):
                    break
            except ValueError:
                pass
            # unreadable or about to expire: replace it (rename is atomic)
            tmp = tls_dir / f".{CA_BUNDLE}.{os.getpid()}.new"
            _write_private(tmp, _new_ca())
            os.replace(tmp, bundle)
            continue
        tmp = tls_dir / f".{CA_BUNDLE}.{os.getpid()}.tmp"
        _write_private(tmp, _new_ca())
        try:
            os.link(tmp, bundle)  # fails if another process won the race: use theirs
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
    data = bundle.read_bytes()
    key = serialization.load_pem_private_key(data, password=None)
    cert = x509.load_pem_x509_certificate(data)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    # publish the public CA certificate (identical content for every process using this CA)
    pem = cert.public_bytes(serialization.Encoding.PEM)
    ca_path = tls_dir / CA_CERT
    if not ca_path.exists() or ca_path.read_bytes() != pem:
        fd, tmpname = tempfile.mkstemp(dir=tls_dir, prefix=".ca.", suffix=".pem")
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        os.chmod(tmpname, 0o644)
        os.replace(tmpname, ca_path)
    return key, cert


def ensure_tls(tls_dir: Path, hosts: tuple[str, ...] = ("127.0.0.1", "localhost")) -> TLSFiles:
    """The shared CA in ``tls_dir`` plus a fresh server certificate for ``hosts``."""
    tls_dir = Path(tls_dir)
    ca_key, ca_cert = _load_or_create_ca(tls_dir)
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    sans: list[x509.GeneralName] = []
    for h in dict.fromkeys(hosts + ("127.0.0.1", "localhost")):
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            sans.append(x509.DNSName(h))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_cert.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=True,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    tag = f"{os.getpid()}-{id(cert) & 0xFFFFFF:x}"
    cert_path = tls_dir / f"server-{tag}.pem"
    key_path = tls_dir / f"server-{tag}.key"
    _write_private(key_path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM) + ca_cert.public_bytes(serialization.Encoding.PEM))
    return TLSFiles(ca_path=tls_dir / CA_CERT, cert_path=cert_path, key_path=key_path)

"""A cluster CA and its certificates, made with `cryptography` (EC P-256 keys).

Layout of a certificate directory (what `paxoi certs init` writes):

- ``ca.pem``, ``ca.key``: the cluster CA. Copy ``ca.pem`` everywhere; keep ``ca.key``
  off the servers (it is only needed to issue more certificates);
- ``node-<id>.pem``, ``node-<id>.key``: one per server of the configuration. The
  certificate names ``paxoi://<cluster>/node/<id>`` and the server's `host` (an IP
  address or a DNS name), and may serve and connect (TLS server and client auth);
- ``client-<name>.pem``, ``client-<name>.key``: a client, ``paxoi://<cluster>/client/<name>``,
  client auth only (it can never pass for a server);
- ``token-<name>``: a client token (`paxoi.security.tokens`).

Keys are written with mode 0600 and certificates 0644. Nothing is overwritten unless
`force` is set: a reissued CA would strand every certificate it signed.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ..core.errors import PaxoiError
from .tls import client_uri, node_uri
from .tokens import new_token, valid_name

CA_DAYS: Final = 3650
LEAF_DAYS: Final = 825
#: Certificates are valid from a little before they are made: clocks differ.
BACKDATE: Final = datetime.timedelta(hours=1)


class CertError(PaxoiError):
    """A certificate cannot be made or written (the message says why)."""


@dataclass(frozen=True)
class Authority:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def ca_paths(out: Path) -> tuple[Path, Path]:
    return out / "ca.pem", out / "ca.key"


def node_paths(out: Path, node: int) -> tuple[Path, Path]:
    return out / f"node-{node}.pem", out / f"node-{node}.key"


def client_paths(out: Path, name: str) -> tuple[Path, Path]:
    return out / f"client-{name}.pem", out / f"client-{name}.key"


def token_path(out: Path, name: str) -> Path:
    return out / f"token-{name}"


# ---------------------------------------------------------------- building


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _name(common: str, cluster: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "paxoi"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, cluster[:64] or "-"),
            x509.NameAttribute(NameOID.COMMON_NAME, common[:64]),
        ]
    )


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def make_ca(cluster: str, days: int = CA_DAYS) -> Authority:
    key = new_key()
    name = _name(f"paxoi CA {cluster}", cluster)
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Authority(cert, key)


def _general_name(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _leaf(
    ca: Authority,
    common: str,
    cluster: str,
    names: list[x509.GeneralName],
    usages: list[x509.ObjectIdentifier],
    days: int,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = new_key()
    now = _now()
    not_after = min(
        now + datetime.timedelta(days=days), ca.cert.not_valid_after_utc
    )  # a leaf never outlives its CA
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common, cluster))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
        .sign(ca.key, hashes.SHA256())
    )
    return cert, key


def make_node_cert(
    ca: Authority,
    cluster: str,
    node: int,
    hosts: Iterable[str],
    days: int = LEAF_DAYS,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """Server `node`'s certificate: its paxoi identity and every host it is reached by."""
    names: list[x509.GeneralName] = [x509.UniformResourceIdentifier(node_uri(cluster, node))]
    for host in dict.fromkeys(hosts):  # in order, without repeats
        names.append(_general_name(host))
    return _leaf(
        ca,
        f"paxoi node {node}",
        cluster,
        names,
        [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
        days,
    )


def make_client_cert(
    ca: Authority, cluster: str, name: str, days: int = LEAF_DAYS
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    if not valid_name(name):
        raise CertError(f"bad client name {name!r}: letters, digits, '_' and '.' only")
    return _leaf(
        ca,
        f"paxoi client {name}",
        cluster,
        [x509.UniformResourceIdentifier(client_uri(cluster, name))],
        [ExtendedKeyUsageOID.CLIENT_AUTH],
        days,
    )


# ---------------------------------------------------------------- files


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def check_writable(paths: Iterable[Path], force: bool) -> None:
    """Refuse, before writing anything, if a file exists and `force` is not set."""
    if force:
        return
    existing = [str(p) for p in paths if p.exists()]
    if len(existing) == 1:
        raise CertError(f"{existing[0]} already exists; use --force to overwrite")
    if existing:
        raise CertError(
            f"{existing[0]} and {len(existing) - 1} more files already exist; "
            "use --force to overwrite"
        )


def write_file(path: Path, data: bytes, mode: int, force: bool) -> None:
    """Write `data` with permissions `mode` from the first byte on (a key is never
    readable by others, even for a moment); refuse to replace a file unless `force`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
    try:
        fd = os.open(path, flags, mode)
    except FileExistsError:
        raise CertError(f"{path} already exists; use --force to overwrite") from None
    except OSError as e:
        raise CertError(f"cannot write {path}: {e.strerror}") from None
    try:
        os.fchmod(fd, mode)  # O_CREAT's mode is masked by the umask, and ignored on O_TRUNC
        with os.fdopen(fd, "wb") as f:
            fd = -1
            f.write(data)
    finally:
        if fd >= 0:
            os.close(fd)


def write_pair(
    cert_path: Path,
    key_path: Path,
    cert: x509.Certificate,
    key: ec.EllipticCurvePrivateKey,
    force: bool,
) -> None:
    write_file(key_path, key_pem(key), 0o600, force)
    write_file(cert_path, cert_pem(cert), 0o644, force)


def load_ca(cert_path: Path, key_path: Path) -> Authority:
    """The CA to issue with: its certificate and its key, which must match."""
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except FileNotFoundError as e:
        raise CertError(f"{e.filename}: no such file (run `paxoi certs init` first)") from None
    except (OSError, ValueError, TypeError) as e:
        raise CertError(f"cannot load the CA ({cert_path}, {key_path}): {e}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CertError(f"{key_path}: not an EC private key")
    if _spki(key.public_key()) != _spki(cert.public_key()):
        raise CertError(f"{key_path} is not the key of {cert_path}")
    return Authority(cert, key)


def _spki(public_key: Any) -> bytes:
    return bytes(
        public_key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def save_ca(out: Path, ca: Authority, force: bool) -> None:
    write_pair(*ca_paths(out), ca.cert, ca.key, force)


def save_token(out: Path, name: str, force: bool) -> str:
    """A new token for `name`, written to token-<name> (0600); the token."""
    token = new_token(name)
    write_file(token_path(out, name), (token + "\n").encode(), 0o600, force)
    return token


def identities_of(cert: x509.Certificate) -> list[str]:
    """The URI names of a certificate (for `paxoi certs` output and tests)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(u) for u in san.get_values_for_type(x509.UniformResourceIdentifier)]


def read_cert_identities(path: Path) -> list[str]:
    try:
        return identities_of(x509.load_pem_x509_certificate(path.read_bytes()))
    except FileNotFoundError:
        raise CertError(f"{path}: no such file") from None
    except (OSError, ValueError) as e:
        raise CertError(f"{path}: not a PEM certificate ({e})") from None


__all__ = [
    "Authority",
    "CertError",
    "ca_paths",
    "check_writable",
    "client_paths",
    "load_ca",
    "make_ca",
    "make_client_cert",
    "make_node_cert",
    "node_paths",
    "read_cert_identities",
    "save_ca",
    "save_token",
    "token_path",
    "write_pair",
]

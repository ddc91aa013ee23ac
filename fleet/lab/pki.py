"""The lab's small PKI: one CA, server certificates and a token-signing certificate.

Everything is ECDSA P-256 and written as PEM files into one directory (the lab passes
``STATE/pki``). Each function is idempotent: existing files are reused when they are
valid, signed by the current CA, not close to expiry and cover the requested names;
otherwise they are replaced. Private keys are written with mode 0600.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from typing import Iterable, List, Optional, Tuple

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_CERT = "ca.crt"
CA_KEY = "ca.key"
CA_DAYS = 3650
LEAF_DAYS = 825
# A certificate expiring within this many days is renewed.
RENEW_DAYS = 30


class PKIError(Exception):
    """A PKI file could not be read or written (one-line message)."""


@dataclass(frozen=True)
class CertPair:
    """Paths of a PEM certificate and its PEM private key."""

    cert: str
    key: str


def ensure_ca(pki_dir: str, common_name: str = "fleet lab CA") -> CertPair:
    """Return the lab CA in ``pki_dir``, creating a self-signed CA if none usable exists."""
    os.makedirs(pki_dir, exist_ok=True)
    pair = CertPair(os.path.join(pki_dir, CA_CERT), os.path.join(pki_dir, CA_KEY))
    loaded = _load_pair(pair)
    if loaded is not None:
        cert, key = loaded
        if _is_ca(cert) and _fresh(cert) and _matches(cert, key):
            return pair
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_pair(pair, cert, key)
    return pair


def ensure_server_cert(pki_dir: str, names: Iterable[str], basename: str = "server") -> CertPair:
    """Return a CA-signed TLS server certificate covering every IP address and DNS name given.

    ``names`` mixes IP addresses (which become IP SANs) and host names (DNS SANs). An
    existing certificate that already covers them is reused; otherwise a new one is
    issued for the union of the requested names and those of the old certificate, so
    a registry still serving the old names keeps working.
    """
    wanted = _parse_names(names)
    if not wanted:
        raise PKIError("ensure_server_cert: no names given")
    ca = ensure_ca(pki_dir)
    ca_cert, ca_key = _load_pair_or_fail(ca)
    pair = CertPair(
        os.path.join(pki_dir, basename + ".crt"), os.path.join(pki_dir, basename + ".key")
    )
    loaded = _load_pair(pair)
    if loaded is not None:
        cert, key = loaded
        have = _san_names(cert)
        if (
            _fresh(cert)
            and _matches(cert, key)
            and _signed_by(cert, ca_cert)
            and wanted <= have
        ):
            return pair
        if _signed_by(cert, ca_cert):
            wanted |= have
    key = ec.generate_private_key(ec.SECP256R1())
    first = sorted(wanted, key=_name_sort_key)[0]
    cert = _leaf(
        key, ca_cert, ca_key, common_name=str(first[1]),
        sans=[_san(kind, value) for kind, value in sorted(wanted, key=_name_sort_key)],
        usage=ExtendedKeyUsageOID.SERVER_AUTH,
    )
    _write_pair(pair, cert, key)
    return pair


def ensure_signing_cert(pki_dir: str, basename: str = "token-signer") -> CertPair:
    """Return a CA-signed certificate for signing registry tokens (JWT ES256)."""
    ca = ensure_ca(pki_dir)
    ca_cert, ca_key = _load_pair_or_fail(ca)
    pair = CertPair(
        os.path.join(pki_dir, basename + ".crt"), os.path.join(pki_dir, basename + ".key")
    )
    loaded = _load_pair(pair)
    if loaded is not None:
        cert, key = loaded
        if _fresh(cert) and _matches(cert, key) and _signed_by(cert, ca_cert):
            return pair
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _leaf(
        key, ca_cert, ca_key, common_name="fleet lab token signer", sans=None, usage=None
    )
    _write_pair(pair, cert, key)
    return pair


def cert_names(cert_path: str) -> List[str]:
    """Return the subject alternative names (IPs and DNS names) of a PEM certificate."""
    cert = _load_cert(cert_path)
    return [str(value) for _, value in sorted(_san_names(cert), key=_name_sort_key)]


# --- helpers -------------------------------------------------------------------------


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


def _leaf(key, ca_cert, ca_key, common_name: str, sans, usage) -> x509.Certificate:
    now = _now()
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=LEAF_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(ca_key, hashes.SHA256())


def _parse_names(names: Iterable[str]) -> set:
    out = set()
    for name in names:
        name = name.strip().strip("[]")
        if not name:
            continue
        try:
            out.add(("ip", ipaddress.ip_address(name)))
        except ValueError:
            out.add(("dns", name.lower()))
    return out


def _name_sort_key(item: Tuple[str, object]):
    kind, value = item
    return (kind, str(value))


def _san(kind: str, value) -> x509.GeneralName:
    if kind == "ip":
        return x509.IPAddress(value)
    return x509.DNSName(value)


def _san_names(cert: x509.Certificate) -> set:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    out = set(("ip", ip) for ip in ext.get_values_for_type(x509.IPAddress))
    out |= set(("dns", name.lower()) for name in ext.get_values_for_type(x509.DNSName))
    return out


def _not_after(cert: x509.Certificate) -> datetime.datetime:
    value = getattr(cert, "not_valid_after_utc", None)
    if value is None:
        value = cert.not_valid_after.replace(tzinfo=datetime.timezone.utc)
    return value


def _fresh(cert: x509.Certificate) -> bool:
    return _not_after(cert) - _now() > datetime.timedelta(days=RENEW_DAYS)


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _matches(cert: x509.Certificate, key) -> bool:
    fmt = serialization.PublicFormat.SubjectPublicKeyInfo
    enc = serialization.Encoding.DER
    return cert.public_key().public_bytes(enc, fmt) == key.public_key().public_bytes(enc, fmt)


def _signed_by(cert: x509.Certificate, ca_cert: x509.Certificate) -> bool:
    if cert.issuer != ca_cert.subject:
        return False
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _load_cert(path: str) -> x509.Certificate:
    try:
        with open(path, "rb") as f:
            return x509.load_pem_x509_certificate(f.read())
    except (OSError, ValueError) as e:
        raise PKIError(f"cannot read certificate {path}: {e}") from None


def _load_pair(pair: CertPair) -> Optional[tuple]:
    try:
        with open(pair.cert, "rb") as f:
            cert = x509.load_pem_x509_certificate(f.read())
        with open(pair.key, "rb") as f:
            key = serialization.load_pem_private_key(f.read(), password=None)
    except (OSError, ValueError, TypeError):
        return None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        return None
    return cert, key


def _load_pair_or_fail(pair: CertPair) -> tuple:
    loaded = _load_pair(pair)
    if loaded is None:
        raise PKIError(f"cannot load {pair.cert} / {pair.key}")
    return loaded


def _write_pair(pair: CertPair, cert: x509.Certificate, key) -> None:
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _atomic_write(pair.key, key_pem, 0o600)
    _atomic_write(pair.cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)


def _atomic_write(path: str, data: bytes, mode: int) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except OSError as e:
        raise PKIError(f"cannot write {path}: {e}") from None

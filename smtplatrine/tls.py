"""The server certificate: the configured one, or a self-signed one kept
under the data directory and made at first start for the configured host."""

import datetime
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from twisted.internet import ssl


def self_signed(hostname, directory):
    """Paths of (certificate, key) in *directory*, made if missing."""
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / "server.crt", directory / "server.key"
    if cert_path.exists() and key_path.exists():
        return cert_path, key_path
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.TraditionalOpenSSL,
                                  serialization.NoEncryption()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def context_factory(cert_path, key_path):
    """Server TLS options for STARTTLS and implicit TLS."""
    pem = cert_path.read_bytes() + b"\n" + key_path.read_bytes()
    return ssl.PrivateCertificate.loadPEM(pem).options()


def endpoint_with_certificate(description, cert_path, key_path):
    """Give an ``ssl:`` endpoint string without ``privateKey=`` ours."""
    if not description.startswith("ssl:") or "privateKey=" in description:
        return description

    def quote(path):
        return str(path).replace("\\", "\\\\").replace(":", "\\:")
    return f"{description}:privateKey={quote(key_path)}:certKey={quote(cert_path)}"

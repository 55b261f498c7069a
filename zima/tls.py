"""The TLS context of Zima's servers: the robot's web console (``[web] tls_cert``) and
``zima serve`` (``--tls-cert``) both listen with this one, so they accept the same
protocol versions and report a bad certificate file the same way."""

from __future__ import annotations

import ssl
from pathlib import Path

__all__ = ["server_tls_context"]


def server_tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A server's TLS context (TLS 1.2 and up) holding ``cert`` and its private ``key``
    (PEM files); ``ValueError`` naming both files when either cannot be loaded."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"cannot load the TLS certificate {cert} / key {key}: {exc}") from exc
    return context

"""Throwaway X.509 material for TLS tests: a CA, a server certificate for loopback, client certificates.

Made with the `openssl` CLI (present wherever etcd's Debian package is), so no Python crypto
dependency is needed. EC P-256 keys keep generation to a few milliseconds.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass

_DAYS = "2"


@dataclass(frozen=True)
class KeyPair:
    cert: str
    key: str


@dataclass(frozen=True)
class Authority:
    """A CA that can sign server and client certificates into `directory`."""

    directory: str
    name: str
    pair: KeyPair

    @property
    def cert(self) -> str:
        return self.pair.cert

    def server(self, name: str = "server", hosts: tuple[str, ...] = ("127.0.0.1", "localhost", "::1")) -> KeyPair:
        sans = ",".join(f"IP:{h}" if _is_ip(h) else f"DNS:{h}" for h in hosts)
        return self._sign(name, [f"subjectAltName={sans}", "extendedKeyUsage=serverAuth,clientAuth"])

    def client(self, name: str = "client") -> KeyPair:
        return self._sign(name, ["extendedKeyUsage=clientAuth"])

    def _sign(self, name: str, extensions: list[str]) -> KeyPair:
        pair = KeyPair(os.path.join(self.directory, f"{name}.crt"), os.path.join(self.directory, f"{name}.key"))
        csr = os.path.join(self.directory, f"{name}.csr")
        ext_file = os.path.join(self.directory, f"{name}.ext")
        with open(ext_file, "w") as f:
            f.write("\n".join(["basicConstraints=CA:FALSE", "keyUsage=digitalSignature,keyEncipherment", *extensions]))
        _openssl("req", "-new", *_new_key(pair.key), "-subj", f"/CN={name}", "-out", csr)
        _openssl(
            "x509", "-req", "-in", csr, "-CA", self.cert, "-CAkey", self.pair.key, "-CAcreateserial",
            "-days", _DAYS, "-extfile", ext_file, "-out", pair.cert,
        )  # fmt: skip
        os.unlink(csr)
        os.unlink(ext_file)
        return pair


def authority(directory: str, name: str = "ca") -> Authority:
    """A fresh self-signed CA whose files live in `directory` (created if needed)."""
    os.makedirs(directory, exist_ok=True)
    pair = KeyPair(os.path.join(directory, f"{name}.crt"), os.path.join(directory, f"{name}.key"))
    _openssl(
        "req", "-x509", *_new_key(pair.key), "-subj", f"/CN=multipy test {name}", "-days", _DAYS,
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        "-out", pair.cert,
    )  # fmt: skip
    return Authority(directory, name, pair)


def _new_key(path: str) -> list[str]:
    return ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", path]


def _is_ip(host: str) -> bool:
    return host.replace(".", "").isdigit() or ":" in host


def _openssl(*args: str) -> None:
    proc = subprocess.run(["openssl", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {proc.stderr.strip()}")

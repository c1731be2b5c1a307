"""Throwaway TLS material for the tests, made with the ``openssl`` CLI: a CA, a server
certificate for 127.0.0.1 (subjectAltName IP:127.0.0.1) and a client certificate, both signed
by the CA; and a certs.d tree as the registry client reads it.

    certs = make_certs(tmp_path / "pki")
    with RegistryServer(tmp_path / "reg", tls=certs.server) as reg: ...
    certs_d = make_certs_d(tmp_path / "certs.d", reg.host, ca=certs.ca, client=certs.client)
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"
DAYS = "2"

_LEAF_EXT = """basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = {usage}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
{san}"""


@dataclass(frozen=True)
class TestCerts:
    """Paths of PEM files; ``server`` and ``client`` are (certificate, key) pairs."""

    __test__ = False  # not a pytest test class

    ca: Path
    ca_key: Path
    server: tuple[Path, Path]
    client: tuple[Path, Path]


def _openssl(*args: str) -> None:
    res = subprocess.run([OPENSSL, *args], capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed:\n{res.stdout}{res.stderr}")


def _key(path: Path) -> None:
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-out", str(path))
    path.chmod(0o600)


def make_ca(directory: Path, name: str = "ca", cn: str = "Tether Test CA") -> tuple[Path, Path]:
    """A self-signed CA in ``directory``: (``<name>.crt``, ``<name>.key``)."""
    directory.mkdir(parents=True, exist_ok=True)
    crt, key = directory / f"{name}.crt", directory / f"{name}.key"
    _key(key)
    _openssl("req", "-x509", "-new", "-key", str(key), "-sha256", "-days", DAYS,
             "-subj", f"/CN={cn}",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             "-addext", "subjectKeyIdentifier=hash",
             "-out", str(crt))
    return crt, key


def make_leaf(directory: Path, name: str, ca: tuple[Path, Path], *, cn: str,
              usage: str, san: str = "", org: str = "") -> tuple[Path, Path]:
    """A certificate signed by ``ca``: (``<name>.crt``, ``<name>.key``). ``usage``:
    serverAuth or clientAuth; ``san``: e.g. ``IP:127.0.0.1``; ``org``: the subject's O
    (Kubernetes reads it as the user's group)."""
    directory.mkdir(parents=True, exist_ok=True)
    crt, key = directory / f"{name}.crt", directory / f"{name}.key"
    csr, ext = directory / f"{name}.csr", directory / f"{name}.ext"
    _key(key)
    _openssl("req", "-new", "-key", str(key), "-subj", f"/CN={cn}" + (f"/O={org}" if org else ""),
             "-out", str(csr))
    ext.write_text(_LEAF_EXT.format(
        usage=usage, san=f"subjectAltName = {san}\n" if san else ""))
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1]),
             "-CAcreateserial", "-sha256", "-days", DAYS, "-extfile", str(ext),
             "-out", str(crt))
    return crt, key


def make_certs(directory: Path, ip: str = "127.0.0.1") -> TestCerts:
    """CA, server certificate for ``ip`` and a client certificate, all in ``directory``."""
    ca = make_ca(directory)
    server = make_leaf(directory, "server", ca, cn=ip, usage="serverAuth", san=f"IP:{ip}")
    client = make_leaf(directory, "client", ca, cn="tether-test-client", usage="clientAuth")
    return TestCerts(ca=ca[0], ca_key=ca[1], server=server, client=client)


def make_certs_d(directory: Path, host: str, *, ca: Path | None = None,
                 client: tuple[Path, Path] | None = None) -> Path:
    """A certs.d tree: ``<directory>/<host>/ca.crt`` (when ``ca``) and ``client.cert`` +
    ``client.key`` (when ``client``). Returns ``directory`` (the value for certs_dirs)."""
    host_dir = directory / host
    host_dir.mkdir(parents=True, exist_ok=True)
    if ca is not None:
        shutil.copyfile(ca, host_dir / "ca.crt")
    if client is not None:
        shutil.copyfile(client[0], host_dir / "client.cert")
        shutil.copyfile(client[1], host_dir / "client.key")
        (host_dir / "client.key").chmod(0o600)
    return directory

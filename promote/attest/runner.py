"""The runner key: the private key that signs ledger entries (ADR 10, "Signed entries").

It is read from `$PROMOTE_RUNNER_KEY`, default `<workspace>/.promote/keys/runner.pem`
(where `promote init` writes the demo one). The file must be a regular file, not a
symlink (opened with O_NOFOLLOW), readable by its owner only (no group or other
permission bits), and an unencrypted PKCS#8 PEM Ed25519 or ECDSA P-256 key. Its public
key must be a `runner` signer of the trust roots the ledger pins, or the verifiers
refuse the entries it signs.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from promote.attest.errors import InvalidKey
from promote.attest.keys import MAX_KEY_FILE, PrivateKey, load_private_pem

__all__ = ["RUNNER_KEY_ENV", "RUNNER_KEY_PATH", "load_runner_key", "runner_key_path"]

RUNNER_KEY_ENV = "PROMOTE_RUNNER_KEY"
#: The default, relative to the workspace root.
RUNNER_KEY_PATH = ".promote/keys/runner.pem"


def runner_key_path(root: Path) -> Path:
    """`$PROMOTE_RUNNER_KEY`, else `<root>/.promote/keys/runner.pem`."""
    env = os.environ.get(RUNNER_KEY_ENV)
    return Path(env) if env else root / RUNNER_KEY_PATH


def load_runner_key(root: Path) -> PrivateKey:
    """The runner's private key for the workspace at `root`.

    Raises:
        InvalidKey (2): missing, a symlink, not a regular file, readable by group or
            others, unreadable, or not a supported private key; one line.
    """
    path = runner_key_path(root)
    what = f"runner key {path}"
    hint = f"set ${RUNNER_KEY_ENV}, or 'promote init' writes a demo one"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NOCTTY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise InvalidKey(f"{what}: no such file ({hint})") from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise InvalidKey(f"{what}: a symlink; name the key file itself") from None
        raise InvalidKey(f"{what}: {e.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise InvalidKey(f"{what}: not a regular file")
        if st.st_mode & 0o077:
            raise InvalidKey(
                f"{what}: mode {stat.S_IMODE(st.st_mode):04o} lets others read it;"
                f" want 0600 (chmod 600 {path})"
            )
        chunks = []
        left = MAX_KEY_FILE + 1
        while left > 0:
            chunk = os.read(fd, left)
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    except OSError as e:
        raise InvalidKey(f"{what}: {e.strerror}") from None
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > MAX_KEY_FILE:
        raise InvalidKey(f"{what}: larger than {MAX_KEY_FILE} bytes, not a key")
    return load_private_pem(data, what)

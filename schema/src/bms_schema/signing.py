"""Registry signatures: an HMAC over each version's manifest, with a key kept outside ``models/``.

A SHA-256 written next to a model file only proves the file matches *that* line of
``metadata.json``: whoever can drop a file into ``models/`` can rewrite the line too. So
every registered version's ``metadata.json`` (its file SHA-256s and all its metadata) is
signed with HMAC-SHA256 under a registry key that does not live in ``models/``:

- ``BMS_REGISTRY_KEY`` (the key itself, at least 16 characters) when set - for a service
  whose models folder is shared or mounted read-only;
- otherwise ``<workspace>/.keys/registry.key``: 32 random bytes (hex), created with mode
  0600 on first use; every process of the workspace uses the same file.

The signature is stored in ``metadata.json`` under ``signature`` (algorithm, key id, value)
and covers the canonical JSON of every other field. :func:`verify_manifest` is called on
every verified load; a version whose manifest was edited without the key is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import stat
from pathlib import Path
from typing import Any

from .atomic import to_jsonable
from .errors import ModelError

ALGORITHM = "HMAC-SHA256"
SIGNATURE_FIELD = "signature"
KEY_ENV = "BMS_REGISTRY_KEY"
KEY_DIR = ".keys"
KEY_FILE = "registry.key"
MIN_KEY_CHARS = 16


def key_path(models_root: Path) -> Path:
    """Where the key file of a registry rooted at ``models_root`` lives (beside ``models/``, not in it)."""
    return Path(models_root).resolve().parent / KEY_DIR / KEY_FILE


def _create_key(path: Path) -> None:
    """Create the key file 0600 if absent; a concurrent creator wins cleanly (link is atomic)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.parent / f".{KEY_FILE}.{secrets.token_hex(6)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, (secrets.token_hex(32) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)


def registry_key(models_root: Path, create: bool = True) -> tuple[bytes, str]:
    """``(key, where)``: the registry key and a description of where it came from."""
    env = os.environ.get(KEY_ENV)
    if env is not None and env.strip():
        if len(env.strip()) < MIN_KEY_CHARS:
            raise ModelError(
                f"{KEY_ENV} is set but shorter than {MIN_KEY_CHARS} characters: use a long random "
                "value (for example `python -c 'import secrets; print(secrets.token_hex(32))'`)"
            )
        return env.strip().encode(), f"${KEY_ENV}"
    path = key_path(models_root)
    if not path.exists():
        if not create:
            raise ModelError(
                f"the registry key {path} does not exist, so no registered model can be verified: "
                f"restore it (or set {KEY_ENV}) or retrain the models"
            )
        try:
            _create_key(path)
        except OSError as exc:
            raise ModelError(
                f"cannot create the registry key {path} ({exc.strerror}): make its folder writable or set {KEY_ENV}"
            ) from exc
    try:
        mode = path.stat().st_mode
        text = path.read_text().strip()
    except OSError as exc:
        raise ModelError(
            f"cannot read the registry key {path} ({exc.strerror}): fix its permissions (chmod 600) or set {KEY_ENV}"
        ) from exc
    if mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise ModelError(
            f"the registry key {path} is writable by other users, so signatures made with it prove "
            f"nothing: run `chmod 600 {path}`"
        )
    if len(text) < MIN_KEY_CHARS:
        raise ModelError(
            f"the registry key {path} is empty or too short: delete it to have a new one created "
            "(versions signed with the old key must then be retrained)"
        )
    return text.encode(), str(path)


def key_id(key: bytes) -> str:
    """A short public fingerprint of the key (tells *which* key signed, reveals nothing of it)."""
    return hashlib.sha256(b"bms-registry-key-id:" + key).hexdigest()[:12]


def _payload(manifest: dict[str, Any]) -> bytes:
    body = {k: v for k, v in manifest.items() if k != SIGNATURE_FIELD}
    return json.dumps(
        to_jsonable(body), sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode()


def sign_manifest(manifest: dict[str, Any], models_root: Path) -> dict[str, Any]:
    """A JSON-ready copy of ``manifest`` with its ``signature`` field set."""
    key, _ = registry_key(models_root)
    body = to_jsonable({k: v for k, v in manifest.items() if k != SIGNATURE_FIELD})
    value = hmac.new(key, _payload(body), hashlib.sha256).hexdigest()
    return {**body, SIGNATURE_FIELD: {"algorithm": ALGORITHM, "key_id": key_id(key), "value": value}}


def verify_manifest(manifest: dict[str, Any], models_root: Path, label: str) -> None:
    """Raise :class:`ModelError` unless ``manifest`` carries a valid signature under this registry's key."""
    signature = manifest.get(SIGNATURE_FIELD)
    if not isinstance(signature, dict) or not isinstance(signature.get("value"), str):
        raise ModelError(
            f"model {label} is refused: its metadata.json carries no registry signature (it was registered "
            "before registry signing, or its metadata was replaced). Nothing from it was loaded. Retrain to "
            f"register a signed version, or - only if you trust its files - sign it with "
            f"ModelRegistry().sign('{label.split('/')[0]}', '{label.split('/')[-1]}')"
        )
    if signature.get("algorithm") != ALGORITHM:
        raise ModelError(
            f"model {label} is refused: unknown signature algorithm {signature.get('algorithm')!r} "
            f"(this registry signs with {ALGORITHM}); retrain it"
        )
    key, where = registry_key(models_root, create=False)
    if signature.get("key_id") != key_id(key):
        raise ModelError(
            f"model {label} is refused: it was signed with another registry key (key id {signature.get('key_id')}, "
            f"the key in {where} has id {key_id(key)}). Restore the key it was registered with, or retrain it"
        )
    expected = hmac.new(key, _payload(manifest), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature["value"]):
        raise ModelError(
            f"model {label} is refused: its metadata.json (file checksums or metadata) was changed after it was "
            "registered - the registry signature does not match. Nothing from it was loaded. Delete this version "
            "and retrain, or restore its original files"
        )

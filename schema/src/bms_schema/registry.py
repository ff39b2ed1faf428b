"""Versioned model registry: ``models/<name>/<version>/`` + ``metadata.json`` + atomic ``latest``.

Writers build a version in a private staging folder; committing takes a per-model file
lock, numbers the version (``v0001``, ``v0002``, ...), renames the folder into place and
switches the ``latest`` symlink with ``os.replace`` - so two processes saving at once
never leave ``latest`` pointing at a half-written model. ``metadata.json`` records a
SHA-256 per file; loading verifies them, so a corrupt or tampered file is a clear error.
Only safe formats are stored (JSON, XGBoost UBJ/JSON, torch ``state_dict`` loaded with
``weights_only=True``, scikit-learn objects via skops with a type allow-list).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .atomic import atomic_write_json, file_lock
from .columns import SCHEMA_VERSION
from .errors import ModelError
from .paths import models_dir

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
VERSION_PATTERN = re.compile(r"^v\d{4,}$")


@dataclass
class Staging:
    """A version being written: put files in ``dir`` and fill ``metadata``."""

    name: str
    dir: Path
    metadata: dict[str, Any] = field(default_factory=dict)
    version: str | None = None


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: str
    dir: Path
    metadata: dict[str, Any]

    def file(self, relative: str) -> Path:
        path = (self.dir / relative).resolve()
        try:
            path.relative_to(self.dir.resolve())
        except ValueError as exc:
            raise ModelError(f"model {self.name}/{self.version}: file '{relative}' is outside the model folder") from exc
        if not path.exists():
            raise ModelError(f"model {self.name}/{self.version} has no file '{relative}'")
        return path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


class ModelRegistry:
    def __init__(self, root: Path | None = None):
        self.root = Path(root) if root else models_dir()
        self.root.mkdir(parents=True, exist_ok=True)

    # -- writing -----------------------------------------------------------------------
    @contextmanager
    def register(self, name: str, metadata: dict[str, Any] | None = None) -> Iterator[Staging]:
        """Stage a new version; it is committed (and becomes ``latest``) when the block succeeds."""
        self._check_name(name)
        model_root = self.root / name
        model_root.mkdir(parents=True, exist_ok=True)
        staging = Staging(name=name, dir=model_root / f".staging-{secrets.token_hex(6)}", metadata=dict(metadata or {}))
        staging.dir.mkdir()
        try:
            yield staging
            staging.version = self._commit(staging)
        finally:
            if staging.dir.exists():
                shutil.rmtree(staging.dir, ignore_errors=True)

    def _commit(self, staging: Staging) -> str:
        files = {
            str(p.relative_to(staging.dir)): _sha256(p)
            for p in sorted(staging.dir.rglob("*"))
            if p.is_file()
        }
        if not files:
            raise ModelError(f"model {staging.name}: nothing was written to register")
        model_root = self.root / staging.name
        with file_lock(model_root / ".lock"):
            version = self._next_version(model_root)
            meta = {
                "name": staging.name,
                "version": version,
                "created": datetime.now(timezone.utc).isoformat(),
                "schema_version": SCHEMA_VERSION,
                **staging.metadata,
                "files": files,
            }
            atomic_write_json(staging.dir / "metadata.json", meta)
            os.rename(staging.dir, model_root / version)
            tmp_link = model_root / f".latest-{secrets.token_hex(4)}"
            os.symlink(version, tmp_link)
            os.replace(tmp_link, model_root / "latest")
        return version

    @staticmethod
    def _next_version(model_root: Path) -> str:
        numbers = [int(p.name[1:]) for p in model_root.iterdir() if VERSION_PATTERN.match(p.name)]
        return f"v{max(numbers, default=0) + 1:04d}"

    # -- reading -----------------------------------------------------------------------
    def names(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and NAME_PATTERN.match(p.name))

    def versions(self, name: str) -> list[str]:
        model_root = self.root / name
        if not model_root.is_dir():
            return []
        return sorted((p.name for p in model_root.iterdir() if VERSION_PATTERN.match(p.name)), key=lambda v: int(v[1:]))

    def latest_version(self, name: str) -> str | None:
        link = self.root / name / "latest"
        if link.is_symlink():
            target = os.readlink(link)
            if VERSION_PATTERN.match(target) and (self.root / name / target).is_dir():
                return target
        versions = self.versions(name)
        return versions[-1] if versions else None

    def exists(self, name: str) -> bool:
        return self.latest_version(name) is not None

    def load(self, name: str, version: str = "latest", verify: bool = True) -> ModelVersion:
        """Resolve ``name``/``version`` and check its files against ``metadata.json``."""
        self._check_name(name)
        resolved = self.latest_version(name) if version in ("latest", "", None) else version
        if resolved is None:
            raise ModelError(f"no model '{name}' is registered yet: train one first (for example run the pipeline)")
        if not VERSION_PATTERN.match(resolved):
            raise ModelError(f"'{version}' is not a model version: use 'latest' or one of {self.versions(name)}")
        folder = self.root / name / resolved
        if not folder.is_dir():
            raise ModelError(f"model '{name}' has no version {resolved}: known versions are {self.versions(name) or 'none'}")
        meta_path = folder / "metadata.json"
        try:
            metadata = json.loads(meta_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ModelError(f"model {name}/{resolved} is corrupt: metadata.json unreadable ({exc})") from exc
        if verify:
            for relative, expected in metadata.get("files", {}).items():
                path = folder / relative
                if not path.is_file():
                    raise ModelError(f"model {name}/{resolved} is corrupt: file '{relative}' is missing")
                if _sha256(path) != expected:
                    raise ModelError(f"model {name}/{resolved} is corrupt: file '{relative}' does not match its checksum")
        return ModelVersion(name=name, version=resolved, dir=folder, metadata=metadata)

    def summary(self) -> dict[str, Any]:
        """Every model with its versions and latest metrics (for health checks and ``/models``)."""
        out: dict[str, Any] = {}
        for name in self.names():
            latest = self.latest_version(name)
            if latest is None:
                continue
            try:
                meta = json.loads((self.root / name / latest / "metadata.json").read_text())
            except (OSError, json.JSONDecodeError):
                meta = {}
            out[name] = {"latest": latest, "versions": len(self.versions(name)), "created": meta.get("created"),
                         "metrics": meta.get("metrics", {})}
        return out

    @staticmethod
    def _check_name(name: str) -> None:
        if not NAME_PATTERN.match(name or ""):
            raise ModelError(f"'{name}' is not a valid model name (letters, digits, '_', '-', '.')")

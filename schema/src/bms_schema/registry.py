"""Versioned model registry: ``models/<name>/<version>/`` + ``metadata.json`` + atomic ``latest``.

Only this module knows the folder layout: callers use :class:`ModelRegistry` (``resolve``,
``load``, ``locate``, ``metadata``, ``aliases``, ``decisions``, ``history``) and never build
``models/<name>/<version>`` paths or read ``metadata.json`` themselves.

Aliases (MLflow style): ``champion`` is the version that predict tools and the live service
use; ``challenger`` is the most recent candidate that did not beat it. ``latest`` is simply the
newest registered version. Committing a version and deciding its alias happen under the same
per-model lock: ``aliases.json`` is replaced atomically and one line per decision is appended
to ``decisions.jsonl`` (candidate vs champion figures on the same held-out data, the decision,
the reason, the time). A candidate becomes champion when it is the first version of its name,
when the caller forces it (``promote=True``) or when it beats the champion on the same
held-out evaluation; see :func:`decide`.

Writers build a version in a private staging folder; committing takes a per-model file
lock, numbers the version (``v0001``, ``v0002``, ...), renames the folder into place and
switches the ``latest`` symlink with ``os.replace`` - so two processes saving at once
never leave ``latest`` pointing at a half-written model. ``metadata.json`` records a
SHA-256 per file and is signed (HMAC-SHA256, key outside ``models/``, see
:mod:`bms_schema.signing`); loading verifies the signature and every file, so a corrupt or
tampered file - even with its checksum rewritten - is a clear error.
Only safe formats are stored (JSON, XGBoost UBJ/JSON, NumPy ``.npz`` without pickle, scikit-learn
objects via skops with a type allow-list; models of older versions may hold a torch ``state_dict``, loaded
with ``weights_only=True``).
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
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .atomic import atomic_write_json, file_lock, to_jsonable
from .columns import SCHEMA_VERSION
from .errors import ModelError
from .leftovers import UNTAGGED_GRACE_SECONDS, owner_tag, tag_alive
from .paths import models_dir
from .signing import sign_manifest, verify_manifest

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
VERSION_PATTERN = re.compile(r"^v\d{4,}$")


ALIASES = ("champion", "challenger")
ALIASES_FILE = "aliases.json"
DECISIONS_FILE = "decisions.jsonl"


@dataclass
class Evaluation:
    """Candidate and champion scored on the same held-out data (what a promotion is decided on).

    ``metric`` names the figure compared (``higher_is_better`` says which way is better);
    ``champion_version`` is the champion that was scored (``None`` when there was none);
    ``dataset`` identifies the held-out data (a fingerprint), and the ``*_metrics`` dicts hold
    every figure of both models for the record.
    """

    metric: str
    higher_is_better: bool
    candidate: float | None
    champion: float | None = None
    champion_version: str | None = None
    dataset: str | None = None
    candidate_metrics: dict[str, Any] = field(default_factory=dict)
    champion_metrics: dict[str, Any] = field(default_factory=dict)
    min_improvement: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass
class Staging:
    """A version being written: put files in ``dir`` and fill ``metadata``.

    Set ``evaluation`` (candidate vs champion on the same held-out data) for a gated promotion,
    or ``promote=True`` to make the new version champion regardless; after the block
    ``version`` and ``decision`` are set.
    """

    name: str
    dir: Path
    metadata: dict[str, Any] = field(default_factory=dict)
    version: str | None = None
    evaluation: Evaluation | None = None
    promote: bool = False
    decision: dict[str, Any] | None = None


def _number(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if out == out else None  # NaN is "no figure"


def decide(version: str, champion: str | None, evaluation: Evaluation | None, promote: bool = False) -> tuple[str, str]:
    """``(alias, reason)`` for a new ``version``: ``"champion"`` or ``"challenger"``.

    Rules, in order: no champion yet -> champion; ``promote`` -> champion; no evaluation, or one
    made against another champion than the current one (it changed while this candidate was
    trained) -> challenger; the candidate beats the champion's figure by more than
    ``min_improvement`` -> champion; otherwise (worse, equal, or either figure missing, for
    example a champion that cannot score the new data) -> challenger.
    """
    if champion is None:
        return "champion", f"{version} is the first model of its name"
    if promote:
        return "champion", f"promoted on request (promote=true) over {champion}"
    if evaluation is None:
        return "challenger", f"no held-out comparison with champion {champion}: kept {champion}"
    if evaluation.champion_version != champion:
        return "challenger", (
            f"the comparison was made against {evaluation.champion_version or 'no champion'} "
            f"but the champion is now {champion}: kept {champion} (retrain or promote explicitly)"
        )
    cand, champ = _number(evaluation.candidate), _number(evaluation.champion)
    name = evaluation.metric
    if cand is None:
        return "challenger", f"candidate has no held-out {name}: kept {champion}"
    if champ is None:
        return "challenger", (
            f"champion {champion} has no held-out {name} on the same data to compare with "
            f"(candidate {cand:.4g}): kept {champion}; use promote=true to replace it"
        )
    gain = cand - champ if evaluation.higher_is_better else champ - cand
    better = "higher" if evaluation.higher_is_better else "lower"
    if gain > evaluation.min_improvement:
        return "champion", (
            f"candidate {name} {cand:.4g} beats champion {champion} {name} {champ:.4g} "
            f"on the same held-out data ({better} is better)"
        )
    return "challenger", (
        f"candidate {name} {cand:.4g} does not beat champion {champion} {name} {champ:.4g} "
        f"on the same held-out data ({better} is better): kept {champion}"
    )


PENDING_PREFIX = ".pending-"


@dataclass
class PendingVersion:
    """A version committed to disk by a tool call that has not finished yet (not ``latest``, no alias)."""

    registry: "ModelRegistry"
    staging: Staging
    version: str


#: Set by the MCP layer around one tool call: versions registered during the call are published
#: (``latest`` + alias) only when the call succeeds, and removed when it fails.
_DEFERRED: ContextVar[list[PendingVersion] | None] = ContextVar("bms_registry_deferred", default=None)


@contextmanager
def deferred_publication() -> Iterator[list[PendingVersion]]:
    """Within the block, registered versions stay pending; call :func:`publish` or :func:`discard` after it.

    A pending version has its folder and a ``.pending-<version>-<owner>`` marker: it is not
    ``latest``, has no alias and is not listed by :meth:`ModelRegistry.versions` (except to the
    call that registered it). If the process dies, the next server start removes it.
    """
    pending: list[PendingVersion] = []
    token = _DEFERRED.set(pending)
    try:
        yield pending
    finally:
        _DEFERRED.reset(token)


def publish(pending: list[PendingVersion]) -> None:
    """Publish every pending version of a successful call: ``latest`` and the alias decision."""
    while pending:
        item = pending.pop(0)
        item.registry._publish(item.staging, item.version)


def discard(pending: list[PendingVersion]) -> None:
    """Remove every pending version of a failed call (nothing half-registered survives)."""
    while pending:
        item = pending.pop(0)
        item.registry._discard(item.staging.name, item.version)


def _own_pending(name: str) -> list[PendingVersion]:
    return [p for p in (_DEFERRED.get() or []) if p.staging.name == name]


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
            raise ModelError(
                f"model {self.name}/{self.version}: file '{relative}' is outside the model folder"
            ) from exc
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
    def register(
        self,
        name: str,
        metadata: dict[str, Any] | None = None,
        *,
        evaluation: Evaluation | None = None,
        promote: bool = False,
    ) -> Iterator[Staging]:
        """Stage a new version; it is committed (and becomes ``latest``) when the block succeeds.

        At commit the version also gets an alias (``champion`` or ``challenger``, see
        :func:`decide`) from ``evaluation`` / ``promote`` (or the same fields set on the staging).
        """
        self._check_name(name)
        model_root = self.root / name
        model_root.mkdir(parents=True, exist_ok=True)
        staging = Staging(
            name=name,
            dir=model_root / f".staging-{owner_tag()}-{secrets.token_hex(6)}",
            metadata=dict(metadata or {}),
            evaluation=evaluation,
            promote=promote,
        )
        staging.dir.mkdir()
        try:
            yield staging
            staging.version = self._commit(staging)
        finally:
            if staging.dir.exists():
                shutil.rmtree(staging.dir, ignore_errors=True)

    def _commit(self, staging: Staging) -> str:
        files = {str(p.relative_to(staging.dir)): _sha256(p) for p in sorted(staging.dir.rglob("*")) if p.is_file()}
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
            atomic_write_json(staging.dir / "metadata.json", sign_manifest(meta, self.root))
            # the marker first: a version folder never exists unpublished without one
            (model_root / f"{PENDING_PREFIX}{version}-{owner_tag()}").write_text(
                json.dumps({"version": version, "owner": owner_tag(), "created": meta["created"]})
            )
            os.rename(staging.dir, model_root / version)
        deferred = _DEFERRED.get()
        if deferred is None:
            self._publish(staging, version)
        else:
            staging.decision = {
                **self._preview_decision(staging.name, version, staging.evaluation, staging.promote),
                "pending": True,
            }
            deferred.append(PendingVersion(self, staging, version))
        return version

    def _publish(self, staging: Staging, version: str) -> None:
        """Make a committed version visible: drop its marker, point ``latest`` at the newest one, decide its alias."""
        model_root = self.root / staging.name
        with file_lock(model_root / ".lock"):
            for marker in model_root.glob(f"{PENDING_PREFIX}{version}-*"):
                marker.unlink(missing_ok=True)
            published = self.versions(staging.name)
            if published:
                tmp_link = model_root / f".latest-{owner_tag()}-{secrets.token_hex(4)}"
                os.symlink(published[-1], tmp_link)
                os.replace(tmp_link, model_root / "latest")
            decision = self._decide_locked(staging.name, version, staging.evaluation, staging.promote)
        if staging.decision is None:
            staging.decision = decision
        else:  # the preview handed out during the call becomes the recorded decision
            staging.decision.clear()
            staging.decision.update(decision)

    def _discard(self, name: str, version: str) -> None:
        model_root = self.root / name
        with file_lock(model_root / ".lock"):
            if self._pending_versions(name).get(version) is not None:
                shutil.rmtree(model_root / version, ignore_errors=True)
            for marker in model_root.glob(f"{PENDING_PREFIX}{version}-*"):
                marker.unlink(missing_ok=True)

    def _pending_versions(self, name: str) -> dict[str, str]:
        """``{version: owner tag}`` of versions committed but not published."""
        model_root = self.root / name
        out: dict[str, str] = {}
        try:
            entries = os.listdir(model_root)
        except OSError:
            return out
        for entry in entries:
            if entry.startswith(PENDING_PREFIX):
                version, _, owner = entry[len(PENDING_PREFIX) :].partition("-")
                if VERSION_PATTERN.match(version):
                    out[version] = owner
        return out

    def _preview_decision(
        self, name: str, version: str, evaluation: Evaluation | None, promote: bool
    ) -> dict[str, Any]:
        """The alias decision ``_publish`` will most likely record (nothing written)."""
        champion = self.aliases(name).get("champion")
        alias, why = decide(version, champion, evaluation, promote)
        return {
            "name": name,
            "version": version,
            "decision": alias,
            "promoted": alias == "champion",
            "forced": bool(promote),
            "reason": why,
            "previous_champion": champion,
            "champion": version if alias == "champion" else champion,
            "evaluation": evaluation.to_dict() if evaluation is not None else None,
        }

    def clean_stale(self, name: str, grace: float = UNTAGGED_GRACE_SECONDS) -> dict[str, list[str]]:
        """Remove staging folders, unpublished versions and temp links of processes that are gone."""
        import time

        model_root = self.root / name
        done: dict[str, list[str]] = {"staging": [], "pending": []}
        for version, owner in self._pending_versions(name).items():
            if tag_alive(owner) is False:
                self._discard(name, version)
                done["pending"].append(f"{name}/{version}")
        for entry in list(model_root.iterdir()):
            if not entry.name.startswith((".staging-", ".latest-")):
                continue
            alive = tag_alive(entry.name)
            try:
                old = time.time() - entry.lstat().st_mtime > grace
            except OSError:
                continue
            if alive is False or (alive is None and old):
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                    done["staging"].append(str(entry))
                else:
                    entry.unlink(missing_ok=True)
        return done

    # -- aliases and decisions (mlops) ---------------------------------------------------
    def _read_aliases(self, name: str) -> dict[str, str] | None:
        path = self.root / name / ALIASES_FILE
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, json.JSONDecodeError) as exc:
            raise ModelError(
                f"model '{name}': {ALIASES_FILE} is unreadable ({exc}); "
                f"fix it with ModelRegistry().promote('{name}', '<version>')"
            ) from exc
        return {k: v for k, v in raw.items() if k in ALIASES and isinstance(v, str) and VERSION_PATTERN.match(v)}

    def aliases(self, name: str) -> dict[str, str]:
        """``{"champion": "v0003", "challenger": "v0004"}`` (only the aliases that are set).

        A model registered before aliases existed (no ``aliases.json``) has its newest version
        as champion.
        """
        self._check_name(name)
        found = self._read_aliases(name)
        if found is None:
            latest = self.latest_version(name)
            return {"champion": latest} if latest else {}
        return {k: v for k, v in found.items() if (self.root / name / v).is_dir()}

    def _append_decision(self, name: str, record: dict[str, Any]) -> None:
        line = (json.dumps(to_jsonable(record), sort_keys=True) + "\n").encode()
        fd = os.open(self.root / name / DECISIONS_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)

    def _decide_locked(
        self,
        name: str,
        version: str,
        evaluation: Evaluation | None,
        promote: bool,
        manual: bool = False,
        reason: str | None = None,
    ) -> dict[str, Any]:
        """Choose and write the alias of ``version``; the caller holds the model's lock."""
        current = self.aliases(name)
        if self._read_aliases(name) is None:  # registered before aliases: the newest earlier version is champion
            earlier = [v for v in self.versions(name) if v != version]
            current = {"champion": earlier[-1]} if earlier else {}
        champion = current.get("champion")
        alias, why = (
            ("champion", reason or f"promoted on request over {champion or 'no champion'}")
            if manual
            else decide(version, champion, evaluation, promote)
        )
        new = dict(current)
        new[alias] = version
        if alias == "champion" and new.get("challenger") == version:
            new.pop("challenger")
        atomic_write_json(self.root / name / ALIASES_FILE, new)
        record = {
            "name": name,
            "version": version,
            "decision": alias,
            "promoted": alias == "champion",
            "forced": bool(promote or manual),
            "reason": why,
            "time": datetime.now(timezone.utc).isoformat(),
            "previous_champion": champion,
            "champion": new.get("champion"),
            "evaluation": evaluation.to_dict() if evaluation is not None else None,
        }
        self._append_decision(name, record)
        return record

    def promote(self, name: str, version: str, reason: str | None = None) -> dict[str, Any]:
        """Make an existing ``version`` the champion (an explicit, recorded decision)."""
        self._check_name(name)
        resolved = self.resolve(name, version)
        if resolved is None or not (self.root / name / resolved).is_dir():
            raise ModelError(
                f"model '{name}' has no version {version}: known versions are {self.versions(name) or 'none'}"
            )
        with file_lock(self.root / name / ".lock"):
            return self._decide_locked(
                name, resolved, None, True, manual=True, reason=reason or f"promoted {resolved} on request"
            )

    def decisions(self, name: str) -> list[dict[str, Any]]:
        """Every promotion decision of ``name``, oldest first (unreadable lines are skipped)."""
        self._check_name(name)
        path = self.root / name / DECISIONS_FILE
        if not path.is_file():
            return []
        out = []
        for line in path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a torn last line of a killed writer
        return out

    def resolve(self, name: str, ref: str | None = "champion") -> str | None:
        """The version a reference means: ``champion``/``@champion``, ``challenger``, ``latest`` or ``vNNNN``."""
        self._check_name(name)
        ref = (ref or "champion").lstrip("@")
        own = _own_pending(name)  # the call that registered a pending version sees it as published
        if ref == "latest":
            if own:
                return max([own[-1].version, self.latest_version(name) or own[-1].version], key=lambda v: int(v[1:]))
            return self.latest_version(name)
        if ref in ALIASES:
            for item in reversed(own):
                if item.staging.decision and item.staging.decision.get("decision") == ref:
                    return item.version
            return self.aliases(name).get(ref)
        if not VERSION_PATTERN.match(ref):
            raise ModelError(
                f"'{ref}' is not a model version: use 'champion', 'challenger', 'latest' or one of "
                f"{self.versions(name) or 'no versions yet'}"
            )
        return ref

    def locate(self, name: str, version: str) -> Path:
        """The folder of a registered version (for run manifests; read files via :meth:`load`)."""
        resolved = self.resolve(name, version)
        if resolved is None or not (self.root / name / resolved).is_dir():
            raise ModelError(
                f"model '{name}' has no version {version}: known versions are {self.versions(name) or 'none'}"
            )
        return self.root / name / resolved

    def metadata(self, name: str, version: str = "champion") -> dict[str, Any]:
        """A version's ``metadata.json`` (no checksum verification: cheap, for listings)."""
        return self.load(name, version, verify=False).metadata

    def history(self, name: str) -> dict[str, Any]:
        """Every version of ``name`` with its metrics and aliases, plus every promotion decision."""
        aliases = self.aliases(name)
        by_version: dict[str, list[str]] = {}
        for alias, v in aliases.items():
            by_version.setdefault(v, []).append(alias)
        latest = self.latest_version(name)
        rows = []
        for v in self.versions(name):
            try:
                meta = json.loads((self.root / name / v / "metadata.json").read_text())
            except (OSError, json.JSONDecodeError):
                meta = {}
            rows.append(
                {
                    "version": v,
                    "created": meta.get("created"),
                    "metrics": meta.get("metrics", {}),
                    "aliases": sorted(by_version.get(v, [])) + (["latest"] if v == latest else []),
                }
            )
        return {"name": name, "aliases": aliases, "latest": latest, "versions": rows, "decisions": self.decisions(name)}

    @staticmethod
    def _next_version(model_root: Path) -> str:
        numbers = [int(p.name[1:]) for p in model_root.iterdir() if VERSION_PATTERN.match(p.name)]
        return f"v{max(numbers, default=0) + 1:04d}"

    # -- reading -----------------------------------------------------------------------
    def names(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and NAME_PATTERN.match(p.name))

    def versions(self, name: str) -> list[str]:
        """Published versions, oldest first (not those of calls still running or killed)."""
        model_root = self.root / name
        if not model_root.is_dir():
            return []
        pending = self._pending_versions(name)
        return sorted(
            (p.name for p in model_root.iterdir() if VERSION_PATTERN.match(p.name) and p.name not in pending),
            key=lambda v: int(v[1:]),
        )

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
        """Resolve ``name``/``version`` (``latest``, ``champion``, ``challenger`` or ``vNNNN``) and check its files."""
        self._check_name(name)
        resolved = self.resolve(name, version or "latest")
        if resolved is None:
            if not self.versions(name):
                raise ModelError(f"no model '{name}' is registered yet: train one first (for example run the pipeline)")
            raise ModelError(
                f"model '{name}' has no {str(version).lstrip('@')} alias: its versions are "
                f"{self.versions(name)} (promote one with promote=true)"
            )
        folder = self.root / name / resolved
        if not folder.is_dir():
            raise ModelError(
                f"model '{name}' has no version {resolved}: known versions are {self.versions(name) or 'none'}"
            )
        if resolved in self._pending_versions(name) and resolved not in {p.version for p in _own_pending(name)}:
            raise ModelError(
                f"model {name}/{resolved} is not published: the tool call that registered it has not "
                f"finished (or its process stopped). Use one of {self.versions(name) or 'no versions yet'}"
            )
        meta_path = folder / "metadata.json"
        try:
            metadata = json.loads(meta_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ModelError(f"model {name}/{resolved} is corrupt: metadata.json unreadable ({exc})") from exc
        if verify:
            if not isinstance(metadata, dict):
                raise ModelError(f"model {name}/{resolved} is corrupt: metadata.json is not an object")
            verify_manifest(metadata, self.root, f"{name}/{resolved}")
            self._verify_files(name, resolved, folder, metadata)
        return ModelVersion(name=name, version=resolved, dir=folder, metadata=metadata)

    @staticmethod
    def _verify_files(name: str, version: str, folder: Path, metadata: dict[str, Any]) -> None:
        """Every file listed with its SHA-256 is there and matches; no file is there that is not listed."""
        files = metadata.get("files")
        if not isinstance(files, dict) or not files:
            raise ModelError(f"model {name}/{version} is corrupt: metadata.json lists no files")
        for relative, expected in files.items():
            path = folder / relative
            if not path.is_file():
                raise ModelError(f"model {name}/{version} is corrupt: file '{relative}' is missing")
            if _sha256(path) != expected:
                raise ModelError(
                    f"model {name}/{version} is corrupt: file '{relative}' does not match its checksum "
                    "(changed after registration): retrain it or restore the file"
                )
        extra = sorted(
            str(p.relative_to(folder))
            for p in folder.rglob("*")
            if p.is_file() and p.name != "metadata.json" and str(p.relative_to(folder)) not in files
        )
        if extra:
            raise ModelError(
                f"model {name}/{version} is refused: file(s) {', '.join(extra[:5])} were added after "
                "registration (not in its signed file list); remove them or retrain"
            )

    def sign(self, name: str, version: str) -> None:
        """Re-sign a version whose files still match its recorded checksums (e.g. one registered before signing).

        An explicit act of trust by whoever runs it: use only for versions you know are yours.
        """
        self._check_name(name)
        folder = self.locate(name, version)
        metadata = json.loads((folder / "metadata.json").read_text())
        self._verify_files(name, folder.name, folder, metadata)
        with file_lock(self.root / name / ".lock"):
            atomic_write_json(folder / "metadata.json", sign_manifest(metadata, self.root))

    def summary(self) -> dict[str, Any]:
        """Every model with its versions, aliases and champion metrics (for health checks and ``/models``)."""
        out: dict[str, Any] = {}
        for name in self.names():
            latest = self.latest_version(name)
            if latest is None:
                continue
            try:
                meta = json.loads((self.root / name / latest / "metadata.json").read_text())
            except (OSError, json.JSONDecodeError):
                meta = {}
            aliases = self.aliases(name)
            champion = aliases.get("champion")
            if champion and champion != latest:
                try:
                    meta = json.loads((self.root / name / champion / "metadata.json").read_text())
                except (OSError, json.JSONDecodeError):
                    meta = {}
            out[name] = {
                "latest": latest,
                "champion": champion,
                "challenger": aliases.get("challenger"),
                "versions": len(self.versions(name)),
                "created": meta.get("created"),
                "metrics": meta.get("metrics", {}),
            }
        return out

    @staticmethod
    def _check_name(name: str) -> None:
        if not NAME_PATTERN.match(name or ""):
            raise ModelError(f"'{name}' is not a valid model name (letters, digits, '_', '-', '.')")

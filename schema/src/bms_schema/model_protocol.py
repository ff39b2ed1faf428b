"""One model protocol for the anomaly detector, the forecaster and the failure model.

In the style of scikit-learn and Darts:

- ``fit(data, ...) -> self`` trains and returns the fitted model;
- ``predict(data, ...)`` (and the family's own verbs, ``score``/``forecast``) never change the
  model: the same input gives the same output however often it is called;
- ``evaluate(holdout) -> dict`` scores the model on held-out data (no refit, no change);
- ``save(staging_dir)`` writes the model's files (safe formats only) into a folder the registry
  commits; ``load(version="champion", registry=None)`` (a classmethod) reads one back;
- ``card``: a :class:`ModelCard` (training-data fingerprint, features, metrics on held-out data,
  library versions, parameters) stored as the version's metadata.

:func:`register_candidate` is the one way a training tool registers a model: it scores the
current champion on the candidate's held-out data, registers the candidate with both figures,
and lets the registry decide (under its lock) whether the candidate becomes ``champion`` or stays
``challenger``; the decision is recorded. Predict tools only ever *load* (``champion`` by default).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeVar, runtime_checkable

from .errors import BMSError, ModelError
from .registry import Evaluation, ModelRegistry

log = logging.getLogger("bms.models")

M = TypeVar("M", bound="Model")

CARD_FIELDS = (
    "family",
    "features",
    "metrics",
    "primary_metric",
    "higher_is_better",
    "data_fingerprint",
    "training_rows",
    "holdout",
    "params",
    "library_versions",
)


@dataclass
class ModelCard:
    """What a registered version is: stored flat in its ``metadata.json`` (plus ``card``)."""

    family: str  # "anomaly" | "forecast" | "failure"
    features: list[str]
    metrics: dict[str, Any]  # figures on held-out data (the card says which in ``holdout``)
    primary_metric: str  # the figure promotion compares
    higher_is_better: bool
    data_fingerprint: str | None = None  # of the training data
    training_rows: int | None = None
    holdout: str = ""  # how the held-out data was chosen
    params: dict[str, Any] = field(default_factory=dict)
    library_versions: dict[str, Any] = field(default_factory=dict)
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat())

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any]) -> "ModelCard":
        raw = metadata.get("card")
        card: dict[str, Any] = raw if isinstance(raw, dict) else metadata
        known = {k: card[k] for k in cls.__dataclass_fields__ if k in card}
        known.setdefault("family", str(metadata.get("name", "unknown")))
        known.setdefault("features", list(metadata.get("features", [])))
        known.setdefault("metrics", dict(metadata.get("metrics", {})))
        known.setdefault("primary_metric", "")
        known.setdefault("higher_is_better", True)
        return cls(**known)

    def metadata(self) -> dict[str, Any]:
        """The registry metadata of this card: the card itself plus the top-level fields listings read."""
        return {
            "card": self.to_dict(),
            "features": list(self.features),
            "metrics": dict(self.metrics),
            "data_fingerprint": self.data_fingerprint,
            "library_versions": dict(self.library_versions),
            "training_rows": self.training_rows,
        }


@runtime_checkable
class Model(Protocol):
    """The protocol every registered model family implements."""

    registry_name: ClassVar[str]
    card: ModelCard | None

    def fit(self: M, data: Any, *args: Any, **kwargs: Any) -> M: ...

    def predict(self, data: Any, *args: Any, **kwargs: Any) -> Any: ...

    def evaluate(self, holdout: Any) -> dict[str, Any]: ...

    def save(self, staging_dir: Path) -> None: ...

    @classmethod
    def load(cls: type[M], version: str = "champion", registry: ModelRegistry | None = None) -> M: ...


def fingerprint_frame(frame: Any) -> str:
    """A stable SHA-256 (first 16 hex digits) of a DataFrame's values, columns and row count."""
    import pandas as pd

    digest = hashlib.sha256()
    digest.update(repr((list(map(str, frame.columns)), len(frame))).encode())
    if len(frame):
        digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()[:16]


@dataclass
class Registered:
    """What :func:`register_candidate` did: the new version, its alias and the decision record."""

    name: str
    version: str
    alias: str  # "champion" or "challenger"
    decision: dict[str, Any]
    evaluation: Evaluation

    @property
    def promoted(self) -> bool:
        return self.alias == "champion"

    def summary(self) -> dict[str, Any]:
        ev = self.evaluation
        return {
            "name": self.name,
            "version": self.version,
            "alias": self.alias,
            "promoted": self.promoted,
            "reason": self.decision.get("reason"),
            "metric": ev.metric,
            "candidate": ev.candidate,
            "champion": ev.champion,
            "champion_version": ev.champion_version,
            "previous_champion": self.decision.get("previous_champion"),
        }


def no_model_error(name: str, training_tool: str, registry: ModelRegistry | None = None) -> ModelError:
    """The refusal of a predict call when no model is registered: names the training tool."""
    registry = registry or ModelRegistry()
    versions = registry.versions(name)
    if versions:
        return ModelError(
            f"model '{name}' has no champion (versions {versions}): promote one with "
            f"{training_tool}(promote=true) or pass model_version"
        )
    return ModelError(
        f"no '{name}' model is registered in this workspace: train one first with the "
        f"{training_tool} tool (predict tools never train)"
    )


def register_candidate(
    model: Model,
    holdout: Any,
    *,
    registry: ModelRegistry | None = None,
    promote: bool = False,
    min_improvement: float = 0.0,
    candidate_metrics: dict[str, Any] | None = None,
    extra_metadata: dict[str, Any] | None = None,
) -> Registered:
    """Register a fitted ``model`` as a candidate; it becomes champion only if it beats the champion.

    Both the candidate and the current champion are scored with ``evaluate(holdout)`` (pass
    ``candidate_metrics`` when the candidate's figures on ``holdout`` are already known;
    ``holdout=None`` with ``candidate_metrics`` registers without scoring the champion). A champion
    that cannot be loaded or cannot score ``holdout`` has no figure, so the candidate stays
    challenger unless ``promote``. With ``MLFLOW_TRACKING_URI`` set the run is mirrored to MLflow.
    """
    registry = registry or ModelRegistry()
    card = model.card
    if card is None:
        raise ModelError(f"{type(model).__name__} has no model card: fit it before registering")
    name = model.registry_name
    if holdout is None and candidate_metrics is None:
        raise ModelError(f"registering {name}: give held-out data or the candidate's held-out figures")
    cand = candidate_metrics if candidate_metrics is not None else model.evaluate(holdout)
    champion_version = registry.resolve(name, "champion")
    champ: dict[str, Any] = {}
    if champion_version is not None and holdout is None:
        champ = {"error": f"no held-out data was given, so champion {champion_version} was not scored"}
    elif champion_version is not None:
        try:
            champ = type(model).load(champion_version, registry).evaluate(holdout)
        except BMSError as exc:
            champ = {"error": f"champion {champion_version} could not score the held-out data: {exc}"}
            log.warning("%s", champ["error"])
    dataset: str | None
    if hasattr(holdout, "fingerprint"):
        dataset = str(holdout.fingerprint())
    else:
        dataset = fingerprint_frame(holdout) if hasattr(holdout, "columns") else None
    evaluation = Evaluation(
        metric=card.primary_metric,
        higher_is_better=card.higher_is_better,
        candidate=cand.get(card.primary_metric),
        champion=champ.get(card.primary_metric),
        champion_version=champion_version,
        dataset=dataset,
        candidate_metrics=dict(cand),
        champion_metrics=champ,
        min_improvement=min_improvement,
    )
    metadata = {**card.metadata(), **(extra_metadata or {})}
    with registry.register(name, metadata, evaluation=evaluation, promote=promote) as staging:
        model.save(staging.dir)
    assert staging.version is not None and staging.decision is not None
    registered = Registered(
        name=name,
        version=staging.version,
        alias=staging.decision["decision"],
        decision=staging.decision,
        evaluation=evaluation,
    )
    log.info("registered %s %s as %s: %s", name, registered.version, registered.alias, staging.decision["reason"])
    from .mlflow_mirror import mirror_registration

    mirror_registration(registry, registered, card)
    return registered

"""Registry aliases (champion / challenger), gated promotion, decision records, concurrency."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest
from bms_schema import ModelError, ModelRegistry
from bms_schema.model_protocol import Model, ModelCard, fingerprint_frame, no_model_error, register_candidate
from bms_schema.registry import Evaluation, decide


class MeanModel:
    """A real (tiny) model implementing the protocol: predicts y as the training mean of y per x-bin."""

    registry_name: ClassVar[str] = "mean_model"

    def __init__(self) -> None:
        self.card: ModelCard | None = None
        self.table: dict[int, float] = {}
        self.overall = 0.0

    def fit(self, data: pd.DataFrame) -> "MeanModel":
        bins = data["x"].round().astype(int)
        self.table = data.groupby(bins)["y"].mean().to_dict()
        self.overall = float(data["y"].mean())
        self.card = ModelCard(
            family="toy",
            features=["x"],
            metrics={},
            primary_metric="mae",
            higher_is_better=False,
            data_fingerprint=fingerprint_frame(data),
            training_rows=len(data),
        )
        return self

    def predict(self, data: pd.DataFrame) -> np.ndarray:
        return data["x"].round().astype(int).map(self.table).fillna(self.overall).to_numpy()

    def evaluate(self, holdout: pd.DataFrame) -> dict[str, Any]:
        return {"mae": float(np.abs(self.predict(holdout) - holdout["y"].to_numpy()).mean())}

    def save(self, staging_dir: Path) -> None:
        (staging_dir / "table.json").write_text(json.dumps({"table": self.table, "overall": self.overall}))

    @classmethod
    def load(cls, version: str = "champion", registry: ModelRegistry | None = None) -> "MeanModel":
        loaded = (registry or ModelRegistry()).load(cls.registry_name, version)
        raw = json.loads(loaded.file("table.json").read_text())
        model = cls()
        model.table = {int(k): v for k, v in raw["table"].items()}
        model.overall = raw["overall"]
        model.card = ModelCard.from_metadata(loaded.metadata)
        return model


def _data(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 10, n)
    return pd.DataFrame({"x": x, "y": np.sin(x) * 3 + rng.normal(0, 0.1, n)})


def test_protocol_is_implemented_and_predicting_does_not_change_the_model() -> None:
    model = MeanModel().fit(_data(500, 0))
    assert isinstance(model, Model)
    before = dict(model.table)
    first = model.predict(_data(50, 1))
    assert np.array_equal(first, model.predict(_data(50, 1))) and model.table == before


def test_first_is_champion_worse_stays_challenger_better_wins_promote_forces(workspace: Path) -> None:
    registry = ModelRegistry()
    holdout = _data(400, 99)
    good = register_candidate(MeanModel().fit(_data(2000, 0)), holdout, registry=registry)
    assert (good.version, good.alias) == ("v0001", "champion")
    assert "first model" in good.decision["reason"]

    tiny = register_candidate(MeanModel().fit(_data(6, 1)), holdout, registry=registry)  # deliberately worse
    assert tiny.alias == "challenger"
    assert registry.aliases("mean_model") == {"champion": "v0001", "challenger": "v0002"}
    assert registry.resolve("mean_model", "champion") == "v0001"
    assert registry.latest_version("mean_model") == "v0002"
    record = registry.decisions("mean_model")[-1]
    assert record["decision"] == "challenger" and record["previous_champion"] == "v0001"
    cand, champ = record["evaluation"]["candidate"], record["evaluation"]["champion"]
    assert cand > champ + 0.3  # the tiny model's MAE is much worse, both measured on the same held-out rows
    assert record["evaluation"]["dataset"] == fingerprint_frame(holdout)
    assert f"does not beat champion v0001 mae {champ:.4g}" in record["reason"]
    # loading without a version gives the champion, not the newest
    assert MeanModel.load(registry=registry).evaluate(holdout)["mae"] == pytest.approx(champ)

    forced = register_candidate(MeanModel().fit(_data(6, 2)), holdout, registry=registry, promote=True)
    assert forced.alias == "champion" and registry.resolve("mean_model", "@champion") == "v0003"
    assert registry.decisions("mean_model")[-1]["forced"] is True

    better = register_candidate(MeanModel().fit(_data(4000, 3)), holdout, registry=registry)
    assert better.alias == "champion" and "beats champion v0003" in better.decision["reason"]
    # manual promotion of an existing version is recorded too
    registry.promote("mean_model", "v0001", reason="rollback")
    assert registry.resolve("mean_model") == "v0001"
    history = registry.history("mean_model")
    assert [d["version"] for d in history["decisions"]] == ["v0001", "v0002", "v0003", "v0004", "v0001"]
    assert history["versions"][0]["aliases"] == ["champion"]
    assert registry.summary()["mean_model"]["champion"] == "v0001"


def test_decide_rules() -> None:
    ev = Evaluation(metric="f1", higher_is_better=True, candidate=0.5, champion=0.5, champion_version="v0001")
    assert decide("v0002", "v0001", ev)[0] == "challenger"  # a tie keeps the champion
    assert decide("v0002", "v0001", Evaluation("f1", True, 0.6, 0.5, "v0001"))[0] == "champion"
    assert decide("v0002", "v0001", Evaluation("f1", True, 0.6, None, "v0001"))[0] == "challenger"
    assert decide("v0002", "v0001", Evaluation("f1", True, None, 0.5, "v0001"))[0] == "challenger"
    stale = decide("v0003", "v0002", Evaluation("f1", True, 0.9, 0.1, "v0001"))
    assert stale[0] == "challenger" and "champion is now v0002" in stale[1]
    assert decide("v0002", "v0001", None)[0] == "challenger"
    assert decide("v0002", "v0001", None, promote=True)[0] == "champion"


def test_no_model_error_names_the_training_tool(workspace: Path) -> None:
    err = no_model_error("mean_model", "train_mean_model")
    assert "train one first with the train_mean_model tool" in str(err)
    with pytest.raises(ModelError, match="no model 'mean_model' is registered yet"):
        MeanModel.load()
    assert not (workspace / "models" / "mean_model").exists()


def test_workspace_without_aliases_file_keeps_its_newest_version_as_champion(workspace: Path) -> None:
    registry = ModelRegistry()
    for i in range(2):
        with registry.register("old", {"metrics": {"f1": 0.5}}) as staging:
            (staging.dir / "m.json").write_text(str(i))
    (workspace / "models" / "old" / "aliases.json").unlink()
    assert registry.aliases("old") == {"champion": "v0002"}
    with registry.register("old", {}) as staging:  # no evaluation: cannot beat v0002
        (staging.dir / "m.json").write_text("3")
    assert staging.decision is not None and staging.decision["decision"] == "challenger"
    assert registry.aliases("old") == {"champion": "v0002", "challenger": "v0003"}


def _trainer(ws: str, seed: int, n: int, queue: "mp.Queue[list[tuple[str, str]]]") -> None:
    os.environ["BMS_WORKSPACE"] = ws
    registry = ModelRegistry()
    out = []
    for i in range(n):
        size = int(np.random.default_rng(seed * 100 + i).integers(5, 3000))
        got = register_candidate(MeanModel().fit(_data(size, seed * 100 + i)), _data(300, 7), registry=registry)
        out.append((got.version, got.alias))
    queue.put(out)


def test_two_trainings_at_once_never_corrupt_aliases(workspace: Path) -> None:
    ctx = mp.get_context("fork")
    queue: "mp.Queue[list[tuple[str, str]]]" = ctx.Queue()
    procs = [ctx.Process(target=_trainer, args=(str(workspace), s, 8, queue)) for s in (1, 2)]
    for p in procs:
        p.start()
    results = queue.get(timeout=120) + queue.get(timeout=120)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    registry = ModelRegistry()
    assert sorted(v for v, _ in results) == [f"v{i:04d}" for i in range(1, 17)]
    decisions = registry.decisions("mean_model")
    assert len(decisions) == 16 and sorted(d["version"] for d in decisions) == sorted(v for v, _ in results)
    # replaying the records in file order gives the alias file: every decision was taken under the lock
    champion = None
    for d in decisions:
        assert d["previous_champion"] == champion
        if d["decision"] == "champion":
            champion = d["version"]
        else:
            # kept: either it did not beat the champion it was compared with, or that champion changed meanwhile
            ev = d["evaluation"]
            assert ev["champion_version"] != champion or not ev["candidate"] < ev["champion"]
    aliases = json.loads((workspace / "models" / "mean_model" / "aliases.json").read_text())
    assert aliases["champion"] == champion
    registry.load("mean_model", "champion")  # its files verify

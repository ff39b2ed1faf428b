"""Path policy, runs and manifests, model registry (including two concurrent writers), cell ids."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
from pathlib import Path

import pytest
from bms_schema import InputError, ModelError, ModelRegistry, PathError, Run, resolve_cell_id, resolve_input
from bms_schema.runs import RUN_ID_PATTERN, list_steps, new_run_id


# ---------------------------------------------------------------- paths
def test_relative_path_resolves_in_workspace(workspace: Path) -> None:
    (workspace / "data" / "x.csv").write_text("a\n1\n")
    assert resolve_input("data/x.csv") == workspace / "data" / "x.csv"


def test_dotdot_escape_refused(workspace: Path) -> None:
    with pytest.raises(PathError, match="outside the workspace and allowed directories"):
        resolve_input("../../etc/passwd")


def test_absolute_outside_refused(workspace: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.csv"
    outside.write_text("a\n1\n")
    with pytest.raises(PathError, match="BMS_ALLOWED_DIRS"):
        resolve_input(str(outside))


def test_symlink_escape_refused(workspace: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.csv"
    secret.write_text("a\n1\n")
    link = workspace / "data" / "innocent.csv"
    link.symlink_to(secret)
    with pytest.raises(PathError, match="outside the workspace"):
        resolve_input("data/innocent.csv")


def test_allowed_dirs(workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "ok.csv").write_text("a\n1\n")
    monkeypatch.setenv("BMS_ALLOWED_DIRS", str(extra))
    assert resolve_input(str(extra / "ok.csv")) == (extra / "ok.csv").resolve()


def test_missing_file_and_folder(workspace: Path) -> None:
    with pytest.raises(PathError, match="file not found"):
        resolve_input("data/none.csv")
    with pytest.raises(PathError, match="not a folder"):
        (workspace / "data" / "f.csv").write_text("a")
        resolve_input("data/f.csv", kind="folder")


# ---------------------------------------------------------------- runs
def test_run_ids_sortable_and_unique() -> None:
    ids = [new_run_id() for _ in range(50)]
    assert len(set(ids)) == 50
    assert all(RUN_ID_PATTERN.match(i) for i in ids)
    assert [i[:18] for i in ids] == sorted(i[:18] for i in ids)


def test_run_steps_share_a_folder(workspace: Path) -> None:
    first = Run(tool="clean", server="s", parameters={"a": 1})
    out = first.path("table.csv")
    out.write_text("x\n")
    first.add_artifact(out, "table", "cleaned table")
    first.logger.info("hello from clean")
    first.finish("ok", "done")
    second = Run(tool="features", server="s", run_id=first.run_id)
    second.finish("error", "bad column")
    assert first.dir.name == "01-clean" and second.dir.name == "02-features"
    manifest = json.loads((first.dir / "manifest.json").read_text())
    assert manifest["status"] == "ok" and manifest["parameters"] == {"a": 1}
    assert manifest["artifacts"][0]["kind"] == "table"
    assert "hello from clean" in first.log_path.read_text()
    steps = list_steps(first.run_id)
    assert [(s["step"], s["status"]) for s in steps] == [("01-clean", "ok"), ("02-features", "error")]


def test_failed_run_removes_partial_artifacts(workspace: Path) -> None:
    run = Run(tool="t", server="s")
    path = run.path("partial.csv")
    path.write_text("half")
    run.add_artifact(path, "table")
    run.finish("error", "boom")
    assert not path.exists()
    assert json.loads((run.dir / "manifest.json").read_text())["artifacts"] == []


def test_bad_run_id(workspace: Path) -> None:
    with pytest.raises(InputError, match="is not a BMS-Flux run id"):
        Run(tool="t", server="s", run_id="../../etc")


# ---------------------------------------------------------------- registry
def _save(name: str, payload: str) -> str:
    registry = ModelRegistry()
    with registry.register(name, {"metrics": {"f1": 0.5}}) as staging:
        (staging.dir / "model.json").write_text(payload)
    return staging.version or ""


def test_register_and_load(workspace: Path) -> None:
    v1 = _save("demo", '{"a": 1}')
    v2 = _save("demo", '{"a": 2}')
    registry = ModelRegistry()
    assert (v1, v2) == ("v0001", "v0002")
    latest = registry.load("demo")
    assert latest.version == "v0002"
    assert json.loads(latest.file("model.json").read_text()) == {"a": 2}
    assert registry.load("demo", "v0001").metadata["metrics"] == {"f1": 0.5}
    assert registry.summary()["demo"]["latest"] == "v0002"


def test_failed_registration_leaves_nothing(workspace: Path) -> None:
    registry = ModelRegistry()
    with pytest.raises(RuntimeError):
        with registry.register("demo") as staging:
            (staging.dir / "model.json").write_text("{}")
            raise RuntimeError("training crashed")
    assert registry.versions("demo") == []
    assert registry.latest_version("demo") is None
    assert not any(p.name.startswith(".staging") for p in (workspace / "models" / "demo").iterdir())


def test_unknown_and_corrupt_versions(workspace: Path) -> None:
    registry = ModelRegistry()
    with pytest.raises(ModelError, match="no model 'demo' is registered yet"):
        registry.load("demo")
    _save("demo", '{"a": 1}')
    with pytest.raises(ModelError, match=r"model 'demo' has no version v0009: known versions are \['v0001'\]"):
        registry.load("demo", "v0009")
    with pytest.raises(ModelError, match="is not a model version"):
        registry.load("demo", "../x")
    (workspace / "models" / "demo" / "v0001" / "model.json").write_text('{"a": 666}')
    with pytest.raises(ModelError, match="does not match its checksum"):
        registry.load("demo")
    (workspace / "models" / "demo" / "v0001" / "metadata.json").write_text("{not json")
    with pytest.raises(ModelError, match="metadata.json unreadable"):
        registry.load("demo")


def _writer(ws: str, n: int, queue: "mp.Queue[list[str]]") -> None:
    os.environ["BMS_WORKSPACE"] = ws
    queue.put([_save("race", json.dumps({"i": i, "pid": os.getpid()})) for i in range(n)])


def test_two_processes_saving_at_once(workspace: Path) -> None:
    ctx = mp.get_context("fork")
    queue: "mp.Queue[list[str]]" = ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(str(workspace), 15, queue)) for _ in range(2)]
    for p in procs:
        p.start()
    versions = queue.get(timeout=60) + queue.get(timeout=60)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert sorted(versions) == [f"v{i:04d}" for i in range(1, 31)]
    registry = ModelRegistry()
    latest = registry.load("race")  # verifies every checksum
    assert latest.version == "v0030"
    assert os.readlink(workspace / "models" / "race" / "latest") == "v0030"


# ---------------------------------------------------------------- cells
def test_resolve_cell_id() -> None:
    known = ["A-1", "A-2", "B-1", "B-7"]
    assert resolve_cell_id("A-2", known) == "A-2"
    assert resolve_cell_id(7, known) == "B-7"
    assert resolve_cell_id("7", known) == "B-7"
    with pytest.raises(InputError, match=r"cell number 1 exists on 2 devices \(A-1, B-1\)"):
        resolve_cell_id(1, known)
    with pytest.raises(InputError, match="unknown cell 'Z-9': valid ids are A-1, A-2, B-1, B-7"):
        resolve_cell_id("Z-9", known)


def test_close_running_steps_after_a_crash(workspace: Path) -> None:
    from bms_schema.runs import close_running_steps

    done = Run(tool="clean", server="s")
    done.finish("ok", "fine")
    crashed = Run(tool="detect", server="s", run_id=done.run_id)  # never finished: the server died
    partial = crashed.path("half.parquet")
    partial.write_text("x")
    crashed.add_artifact(partial, "table")
    crashed.write_manifest()
    assert close_running_steps(done.run_dir, "detect", "server died") == ["02-detect"]
    assert [(s["step"], s["status"]) for s in list_steps(done.run_id)] == [("01-clean", "ok"), ("02-detect", "error")]
    manifest = json.loads((crashed.dir / "manifest.json").read_text())
    assert manifest["status"] == "error" and manifest["message"] == "server died"
    assert not partial.exists()
    assert close_running_steps(done.run_dir) == []


def test_atomic_savefig_writes_png_and_always_closes_the_figure(tmp_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from bms_schema.atomic import atomic_savefig

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    out = atomic_savefig(fig, tmp_path / "ok.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not plt.fignum_exists(fig.number)
    bad, _ = plt.subplots()
    with pytest.raises(ValueError):
        atomic_savefig(bad, tmp_path / "bad.nosuchformat")
    assert not plt.fignum_exists(bad.number)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ok.png"]  # nothing half-written left

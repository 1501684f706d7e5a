"""Loading published backbone weights: from a local file, a URL, or a Hugging Face Hub repository."""

from __future__ import annotations

from pathlib import Path

import torch


def load_state_dict(source: str | Path, hub_filename: str | None = None) -> dict[str, torch.Tensor]:
    """Load a state dict from a local file, an http(s) URL, or a Hub repository.

    Args:
        source: a path to a ``.pth`` / ``.pt`` / ``.bin`` / ``.safetensors`` file, an ``http(s)://``
            URL of such a file (downloaded once into the torch hub cache), or a Hub repository id
            (``owner/name``) when `hub_filename` is given.
        hub_filename: the file inside the Hub repository `source`.

    Returns:
        The state dict (tensors on CPU). A checkpoint that wraps it under ``"state_dict"`` is unwrapped.
    """
    source = str(source)
    if hub_filename is not None:
        from huggingface_hub import hf_hub_download

        try:
            path = Path(hf_hub_download(repo_id=source, filename=hub_filename))
        except Exception as error:  # offline, missing repo or file: say which one
            raise ValueError(f"could not fetch {hub_filename!r} from Hub repository {source!r}: {error}") from error
    elif source.startswith(("http://", "https://")):
        try:
            state = torch.hub.load_state_dict_from_url(source, map_location="cpu", progress=False, weights_only=True)
        except Exception as error:
            raise ValueError(f"could not download weights from {source}: {error}") from error
        return _unwrap(state, source)
    else:
        path = Path(source)
        if not path.is_file():
            raise ValueError(f"weights file {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    return _unwrap(torch.load(path, map_location="cpu", weights_only=True), str(path))


def _unwrap(state: object, origin: str) -> dict[str, torch.Tensor]:
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{origin} does not hold a state dict (got {type(state).__name__})")
    return state


def load_into(module: torch.nn.Module, state_dict: dict[str, torch.Tensor], origin: str) -> None:
    """Load `state_dict` strictly into `module`, tolerating only BatchNorm's ``num_batches_tracked``
    counters (absent from older published checkpoints), and name the offending keys otherwise."""
    own = module.state_dict()
    missing = [k for k in own if k not in state_dict and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state_dict if k not in own]
    mismatched = [k for k in own if k in state_dict and tuple(state_dict[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or mismatched:
        raise ValueError(
            f"weights from {origin} do not fit {type(module).__name__}: "
            f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}, "
            f"wrong shape {mismatched[:5]}"
        )
    module.load_state_dict(state_dict, strict=False)

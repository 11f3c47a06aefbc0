"""Checkpoints are loaded as tensors only: no pickle of arbitrary objects ever runs.

- ``.safetensors``: :func:`safetensors.torch.load_file` (a header and raw tensor bytes; no code).
- anything else (``.pt``, ``.pth``, ``.bin``): ``torch.load(..., weights_only=True)``, torch's restricted
  unpickler that rebuilds tensors, containers and numbers only and refuses every other object.

Formats that can hold code (``torch.export`` ``.pt2`` archives, full pickled modules) are refused. Every failure
is a :class:`CheckpointError` with a one-line message naming the file; torch's advice to retry with
``weights_only=False`` (which would run whatever the file holds) is never passed on.
"""

from __future__ import annotations

import pickle
import warnings
import zipfile
from pathlib import Path

__all__ = ["CheckpointError", "load_tensors", "load_state_dict_into"]


class CheckpointError(ValueError, RuntimeError):
    """A checkpoint that cannot be loaded as tensors (missing, corrupt, truncated, holding code, or not matching
    the model). A ``ValueError`` (a bad input) and, for older callers, a ``RuntimeError``."""


def _reason(err: BaseException) -> str:
    """The first line of ``err`` without torch's ``weights_only=False`` advice, at most 160 characters."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    lines = [ln for ln in lines if "weights_only" not in ln and "arbitrary code" not in ln]
    text = lines[0] if lines else type(err).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def load_tensors(path, what: str = "checkpoint"):
    """The tensors stored at ``path`` (a state dict, a tensor, or containers of them), loaded on the CPU.

    Raises:
        FileNotFoundError: no file at ``path``.
        CheckpointError: ``.pt2`` (refused), a file holding other Python objects (refused), or a corrupt or
            truncated file.
    """
    import torch

    path = Path(path).expanduser()
    if path.is_dir():
        raise CheckpointError(f"{what} {str(path)!r} is a folder; expected a .safetensors or .pt file of tensors")
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {str(path)!r}")
    if path.suffix.lower() == ".pt2":
        raise CheckpointError(
            f"{what} {str(path)!r}: torch.export (.pt2) archives are refused, because loading one can run code; "
            "save the weights as a state dict (.safetensors, or .pt through torch.save(model.state_dict()))"
        )
    if path.suffix.lower() == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError as err:
            raise CheckpointError(f"{what} {str(path)!r} needs the safetensors package (pip install "
                                  "safetensors)") from err
        try:
            return load_file(str(path), device="cpu")
        except Exception as err:  # noqa: BLE001 - safetensors raises its own error types for a bad file
            raise CheckpointError(f"{what} {str(path)!r} is not a readable safetensors file: {_reason(err)}") from None
    try:
        with warnings.catch_warnings():  # torch's notes on odd files (e.g. a pickle protocol) go into our one line
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "unsupported global" in str(err).lower():  # torch's restricted unpickler met a non-tensor object
            raise CheckpointError(
                f"{what} {str(path)!r} holds Python objects other than tensors and was refused (dptheory loads "
                "checkpoints as tensors only; unpickling other objects can run code)"
            ) from None
        raise CheckpointError(f"{what} {str(path)!r} is not a readable tensor checkpoint (corrupt, truncated or "
                              "not a torch.save file)") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, AttributeError, ImportError,
            KeyError, IndexError, TypeError, UnicodeDecodeError, MemoryError) as err:
        raise CheckpointError(f"{what} {str(path)!r} is not a readable tensor checkpoint (corrupt or truncated: "
                              f"{_reason(err)})") from None


def load_state_dict_into(module, path, what: str = "checkpoint", *, strict: bool = True):
    """Load the state dict at ``path`` (:func:`load_tensors`) into ``module``; returns the module.

    Raises :class:`CheckpointError` when the file is not a state dict or does not match the module.
    """
    state = load_tensors(path, what)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise CheckpointError(f"{what} {str(path)!r} holds a {type(state).__name__}, not a state dict")
    try:
        module.load_state_dict(state, strict=strict)
    except (RuntimeError, TypeError, ValueError, AttributeError) as err:
        raise CheckpointError(f"{what} {str(path)!r} does not match the model (strict load): {_reason(err)}") from None
    return module

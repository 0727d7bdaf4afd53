"""Option meanings shared by the commands, so ``--device`` says the same thing everywhere."""

from __future__ import annotations

from pathlib import Path

from histobridge.errors import ModelError

DEVICE_HELP = "auto (CUDA, then Apple MPS, then CPU), or a torch device: cpu, cuda, cuda:1, mps."


def resolve_device(device: str) -> str:
    """``auto`` or a torch device name, checked (a CUDA/MPS device that is absent is an error)."""
    from histobridge.models.classifier import select_device

    text = device.strip()
    return str(select_device(None if text.lower() in ("", "auto") else text))


def generator_path(path: Path) -> Path:
    """The generator file for a path: the file itself, or in a folder ``generator.safetensors``,
    else its only ``.safetensors``, else its only ``.pkl`` (code-free weights win over a pickle)."""
    if not path.is_dir():
        return path
    if (path / "generator.safetensors").is_file():
        return path / "generator.safetensors"
    for pattern in ("*.safetensors", "*.pkl"):
        found = sorted(p for p in path.glob(pattern) if p.is_file())
        if len(found) == 1:
            return found[0]
        if found:
            names = ", ".join(p.name for p in found[:6]) + (" …" if len(found) > 6 else "")
            raise ModelError(f"{path}: {len(found)} {pattern[1:]} files ({names}); pass one of them")
    raise ModelError(f"{path}: no generator here (expected generator.safetensors + .json, or one .pkl)")


def split_list(values: list[str] | None) -> list[str] | None:
    """Accept repeated options and comma-separated lists alike (``--classes a,b --classes c``)."""
    if not values:
        return None
    out = [v.strip() for item in values for v in item.split(",") if v.strip()]
    return out or None


__all__ = ["DEVICE_HELP", "generator_path", "resolve_device", "split_list"]

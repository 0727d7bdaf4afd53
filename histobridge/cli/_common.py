"""Option meanings shared by the commands, so ``--device`` says the same thing everywhere."""

from __future__ import annotations

DEVICE_HELP = "auto (CUDA, then Apple MPS, then CPU), or a torch device: cpu, cuda, cuda:1, mps."


def torch_device(name: str) -> str | None:
    """The device argument for the model loaders: ``None`` lets them pick the best one for ``auto``."""
    value = name.strip()
    return None if value.lower() in ("", "auto") else value


def split_list(values: list[str] | None) -> list[str] | None:
    """Accept repeated options and comma-separated lists alike (``--classes a,b --classes c``)."""
    if not values:
        return None
    out = [v.strip() for item in values for v in item.split(",") if v.strip()]
    return out or None


__all__ = ["DEVICE_HELP", "split_list", "torch_device"]

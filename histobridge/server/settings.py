"""What one server instance is allowed to touch and how hard it may work."""

from __future__ import annotations

import ipaddress
import secrets
from dataclasses import dataclass, field
from pathlib import Path

TOKEN_ENV = "HISTOBRIDGE_TOKEN"
LOOPBACK_NAMES = ("localhost", "ip6-localhost")


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def new_token() -> str:
    return secrets.token_urlsafe(24)


@dataclass(frozen=True)
class ServerSettings:
    """Projects and model folders that may be named, limits, pool sizes and the access token.

    ``token`` None means no token is asked for (allowed on loopback only; see :func:`check_token_rule`).
    """

    projects: tuple[Path, ...] = ()
    model_dirs: tuple[Path, ...] = ()
    slide_roots: tuple[Path, ...] = ()
    host: str = "127.0.0.1"
    port: int = 8321
    token: str | None = None
    workers: int = 2
    job_ttl_s: float = 3600.0
    max_body_bytes: int = 8 * 1024 * 1024
    max_tiles: int = 200_000
    max_synthetic: int = 64
    max_seeds: int = 512
    model_cache: int = 4
    slide_cache: int = 16
    device: str | None = None
    sample_models: bool = True
    inference_workers: int = 2
    extra: dict[str, str] = field(default_factory=dict)

    def check_token_rule(self) -> None:
        """Binding anything but loopback without a token would serve slides to the network."""
        from histobridge.errors import InputError

        if not is_loopback(self.host) and not self.token:
            raise InputError(
                f"binding {self.host} (not loopback) needs an access token; set {TOKEN_ENV} "
                "or let `histobridge serve` generate one"
            )


__all__ = ["TOKEN_ENV", "ServerSettings", "is_loopback", "new_token"]

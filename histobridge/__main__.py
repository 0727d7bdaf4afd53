"""``python -m histobridge``: the same command line as the ``histobridge`` console script."""

from __future__ import annotations

from histobridge.cli import main

if __name__ == "__main__":
    main()

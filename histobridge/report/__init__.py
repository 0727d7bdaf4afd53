"""Self-contained HTML reports (pictures embedded, no network)."""

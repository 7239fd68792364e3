"""One page per run (``report.html``) and per sweep, self-contained HTML: ``python scripts/report.py <dir>``."""

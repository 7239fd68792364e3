"""What the sweepers make of finished Hydra jobs: ok, failed or pruned, and a short report at the end."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hydra.core.utils import JobReturn

from litvision.support.job_status import classify
from litvision.support.records import FAILED, OK, PRUNED


@dataclass
class JobOutcome:
    number: int
    overrides: list[str]
    status: str
    value: Any = None
    error: str | None = None


def job_outcome(job: JobReturn, number: int) -> JobOutcome:
    status, error = classify(job)
    value = job.return_value if status == OK else None
    return JobOutcome(number, list(job.overrides or []), status, value=value, error=error)


def report(outcomes: Sequence[JobOutcome], sweep_dir: str, hidden: Sequence[str] = ()) -> str:
    """'4 runs: 3 ok, 1 failed' and one line per failed run: its number, overrides and error."""
    counts = {status: sum(o.status == status for o in outcomes) for status in (OK, PRUNED, FAILED)}
    head = f"{len(outcomes)} runs: " + ", ".join(f"{n} {status}" for status, n in counts.items() if n)
    lines = [head]
    # Overrides every run shares (data paths, quiet flags) say nothing about why one run failed.
    shared = set.intersection(*(set(o.overrides) for o in outcomes)) if len(outcomes) > 1 else set()
    for outcome in outcomes:
        if outcome.status == FAILED:
            shown = " ".join(o for o in outcome.overrides if o not in shared and not o.startswith(tuple(hidden)))
            lines.append(f"  #{outcome.number} {shown}: {outcome.error}")
    lines.append(f"each run's status: {sweep_dir}/<run>/status.json; table: python scripts/summarize.py {sweep_dir}")
    return "\n".join(lines)

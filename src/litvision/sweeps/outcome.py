"""What the sweepers make of finished Hydra jobs: ok, failed or pruned, and a short report at the end."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hydra.core.utils import JobReturn, JobStatus

from litvision.support.records import FAILED, OK, PRUNED, is_pruned, one_line


@dataclass
class JobOutcome:
    number: int
    overrides: list[str]
    status: str
    value: Any = None
    error: str | None = None


def classify(job: JobReturn) -> tuple[str, str | None]:
    """(ok, None), (failed, the error in one line) or (pruned, the pruning message) for a finished job."""
    if job.status == JobStatus.COMPLETED:
        return OK, None
    # The exception itself: JobReturn's public .return_value re-raises it instead of returning it.
    error = job._return_value
    message = one_line(error) if isinstance(error, BaseException) else str(error)
    return (PRUNED if is_pruned(error) else FAILED), message


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

"""Job dependencies (Slurm's ``--dependency``): whether a job's conditions on other jobs hold yet.

A pure function of the dependencies and a lookup of the jobs they name, so the scheduler's cycle
and the benchmark run the same code. ``after`` waits for the job to have started (or ended),
``afterany`` for it to end, ``afterok`` for it to complete, ``afternotok`` for it to fail or be
cancelled. A condition that the named job's end contradicts can never hold (``NEVER``): the
scheduler cancels the waiting job instead of keeping it queued forever.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

OK, WAIT, NEVER = "ok", "wait", "never"

# What the lookup says of a job: (state, has it ever started), or None if there is no such job.
JobStatus = tuple[str, bool]


def dependency_state(
    depends: Iterable[tuple[str, int]], lookup: Callable[[int], JobStatus | None]
) -> tuple[str, str]:
    """(OK | WAIT | NEVER, the first condition that waits or fails, as ``"afterok:12 (job 12 failed)"``)."""
    result, detail = OK, ""
    for kind, job_id in depends:
        status = lookup(job_id)
        if status is None:
            return NEVER, f"{kind}:{job_id} (no such job)"
        state, started = status
        ended = state in ("completed", "failed", "cancelled")
        if kind == "after":
            held = started or ended
        elif kind == "afterany":
            held = ended
        elif kind == "afterok":
            if ended and state != "completed":
                return NEVER, f"{kind}:{job_id} (job {job_id} {state})"
            held = ended
        elif kind == "afternotok":
            if state == "completed":
                return NEVER, f"{kind}:{job_id} (job {job_id} completed)"
            held = ended
        else:
            return NEVER, f"{kind}:{job_id} (unknown kind)"
        if not held and result == OK:
            result, detail = WAIT, f"{kind}:{job_id} (job {job_id} {state})"
    return result, detail

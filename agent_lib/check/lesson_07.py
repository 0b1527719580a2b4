"""Checks for lesson 07's exercises: a third deployment beside the second, a kill instead of a fix, a resume on v3."""

from __future__ import annotations

from ..clients import Admin, Ingress
from ._core import completed, exercise, output, require

__all__ = ["exercise_1", "exercise_2", "exercise_3"]


@exercise(7, 1)
def exercise_1(
    ingress: Ingress, admin: Admin, old_invocation_id: str, new_invocation_id: str, new_deployment_id: str
) -> str:
    """A refund started on the previous deployment finished there; a new one ran on your new deployment."""
    old = completed(admin, old_invocation_id, success=True)
    new = completed(admin, new_invocation_id, success=True)
    require(
        new.get("pinned_deployment_id") == new_deployment_id,
        f"the new refund ran on {new.get('pinned_deployment_id')}, not on {new_deployment_id}",
        "register the new deployment first (serve_in_kernel registers it), then send the new request",
    )
    require(
        old.get("pinned_deployment_id") not in (None, new_deployment_id),
        f"the old refund is pinned to {old.get('pinned_deployment_id')}: start it before you deploy the new version",
        "send the old refund first and let it wait for its approval; approve it after the new deployment is up",
    )
    old_out, new_out = output(ingress, old_invocation_id), output(ingress, new_invocation_id)
    require(
        isinstance(old_out, dict) and isinstance(new_out, dict) and old_out.get("version") != new_out.get("version"),
        f"both finished with the same code: {old_out!r} and {new_out!r}",
    )
    return (
        f"the old refund finished on {old['pinned_deployment_id']} ({old_out['version']}), the new one on "
        f"{new_deployment_id} ({new_out['version']})"
    )


@exercise(7, 2)
def exercise_2(admin: Admin, invocation_id: str) -> str:
    """A GBP refund stuck on v2 that you killed instead of fixing: it ended at once, with an error for its caller."""
    row = admin.invocation(invocation_id)
    require(row is not None, f"the server has no invocation {invocation_id!r}")
    assert row is not None
    require(row["status"] == "completed", f"it is {row['status']!r}", "admin.kill(invocation_id)")
    failure = str(row.get("completion_failure") or "")
    require(
        row.get("completion_result") == "failure" and ("kill" in failure.lower() or "abort" in failure.lower()),
        f"it ended with {row.get('completion_result')!r} {failure!r}, not by a kill",
        "kill it (admin.kill), do not resume or cancel it",
    )
    return f"killed: its caller gets {failure!r}; nothing ran after the kill, and no refund was issued"


@exercise(7, 3)
def exercise_3(ingress: Ingress, admin: Admin, invocation_id: str, deployment_id: str) -> str:
    """The stuck refund, resumed on the deployment you put back: it finished there, with v3's code."""
    row = completed(admin, invocation_id, success=True)
    require(
        row.get("pinned_deployment_id") == deployment_id,
        f"it finished on {row.get('pinned_deployment_id')}, not on {deployment_id}",
        "admin.resume(invocation_id, deployment_id=...) resumes it on the deployment you name",
    )
    result = output(ingress, invocation_id)
    require(isinstance(result, dict) and str(result.get("version", "")).startswith("v3"), f"it answered {result!r}")
    return f"resumed on {deployment_id}, it finished with {result['version']}: {result.get('answer')!r}"

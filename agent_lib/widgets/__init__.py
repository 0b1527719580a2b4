"""ipywidgets for the lessons: the approval panel (04); more panels are added here as lessons need them."""

from .approval import ApprovalPanel, ApprovalRequest, Decision, format_amount, invocation_statuses, pending_requests

__all__ = [
    "ApprovalPanel",
    "ApprovalRequest",
    "Decision",
    "format_amount",
    "invocation_statuses",
    "pending_requests",
]

# Lesson 06: the invocation monitor and the journal timeline.
from .monitor import InvocationMonitor  # noqa: E402
from .timeline import JournalView, timeline_figure  # noqa: E402

__all__ += ["InvocationMonitor", "JournalView", "timeline_figure"]

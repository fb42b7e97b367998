"""Topic, role and process names, in luno/workflow's formats (spec §1.15)."""

from __future__ import annotations

__all__ = ["delete_topic", "make_role", "run_state_change_topic", "topic"]


def _topic_base(workflow_name: str) -> str:
    return workflow_name.replace(" ", "_")


def topic(workflow_name: str, status: int) -> str:
    """The topic of a status: ``"user sign up"``, 1 gives ``"user_sign_up-1"``."""
    return f"{_topic_base(workflow_name)}-{int(status)}"


def delete_topic(workflow_name: str) -> str:
    """The topic that carries data-deletion requests of a workflow."""
    return f"{_topic_base(workflow_name)}-delete"


def run_state_change_topic(workflow_name: str) -> str:
    """The topic that carries run-state changes (pause, cancel, completion, deletion)."""
    return f"{_topic_base(workflow_name)}-run-state-change"


def make_role(*parts: str) -> str:
    """Join parts with ``-``, lower-case, and replace spaces with ``_``.

    Used for roles, process names and receiver names.
    """
    return "-".join(parts).lower().replace(" ", "_")

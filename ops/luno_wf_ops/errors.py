"""Errors of the operator surface (besides luno_wf's own, which pass through)."""

from __future__ import annotations

__all__ = ["OpsError", "ReasonRequired", "SelectionChanged", "Unsupported"]


class OpsError(Exception):
    """Base class of the operator surface's own errors."""


class Unsupported(OpsError):
    """The store (or what was loaded) lacks what the request needs: history, a graph."""


class ReasonRequired(OpsError, ValueError):
    """Cancel and delete data are refused without a reason."""


class SelectionChanged(OpsError):
    """A bulk action found more runs than the operator confirmed; nothing was done."""

"""Driving async adapters from Hypothesis's synchronous state machines.

Each example gets its own event loop (an :class:`asyncio.Runner`) and enters the author's
factory *on that loop*, so pools and clients the adapter opens belong to it. Every rule
runs its coroutines with :meth:`Harness.run`; teardown exits the factory and closes the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from typing import Any, Generic, TypeVar

__all__ = ["Harness", "agree"]

A = TypeVar("A")
T = TypeVar("T")


class Harness(Generic[A]):
    """An adapter from ``factory`` on a private event loop."""

    def __init__(self, factory: Callable[[], AbstractAsyncContextManager[A]]) -> None:
        self._runner = asyncio.Runner()
        self._stack = contextlib.AsyncExitStack()
        try:
            self.adapter: A = self._runner.run(self._stack.enter_async_context(factory()))
        except BaseException:
            self._runner.close()
            raise

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` to completion on the harness's loop."""
        return self._runner.run(coro)

    def outcome(self, coro: Coroutine[Any, Any, T]) -> tuple[T | None, Exception | None]:
        """Run ``coro``; its value, or the exception it raised."""
        try:
            return self._runner.run(coro), None
        except Exception as exc:
            return None, exc

    def close(self) -> None:
        """Exit the factory (closing the adapter), then close the loop."""
        try:
            self._runner.run(self._stack.aclose())
        finally:
            self._runner.close()


def agree(
    harness: Harness[A],
    reference: A,
    op: Callable[[A], Awaitable[T]],
    what: str,
) -> tuple[T | None, T | None, Exception | None]:
    """Apply ``op`` to the reference, then to the adapter; they must succeed or fail alike.

    Returns:
        The reference's value, the adapter's value, and the (agreed) exception, if any.

    Raises:
        AssertionError: One failed and the other did not, or they raised different
            kinds of error. An adapter error the reference did not raise is chained.

    """

    async def call(target: A) -> T:
        return await op(target)

    want, want_exc = harness.outcome(call(reference))
    got, got_exc = harness.outcome(call(harness.adapter))
    if want_exc is None and got_exc is not None:
        raise AssertionError(f"{what}: the adapter raised, the reference did not") from got_exc
    if want_exc is not None and got_exc is None:
        raise AssertionError(
            f"{what}: the reference raised {type(want_exc).__name__} ({want_exc}), "
            f"the adapter returned {got!r}"
        )
    if want_exc is not None and not isinstance(got_exc, type(want_exc)):
        raise AssertionError(
            f"{what}: expected {type(want_exc).__name__}, the adapter raised "
            f"{type(got_exc).__name__}: {got_exc}"
        ) from got_exc
    return want, got, want_exc

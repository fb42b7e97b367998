"""A fleet of in-memory members joining, leaving, stalling and resuming at random.

Invariants: no role ever has two members inside its block at once; once the fleet is left
alone (every stalled member resumed), every role is held by a member still asking for it,
counts within one of even.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from luno_wf_adaptertest.rolescheduler import Fleet, Monitor

from luno_wf.memory import MemRoleScheduler

ROLES = [f"wf-{i}" for i in range(5)] + [f"wf-1-consumer-{i}-of-4" for i in (1, 2, 3, 4)]
LEASE = timedelta(milliseconds=20)
MAX_MEMBERS = 4


class FleetMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.runner = asyncio.Runner()
        self.first = MemRoleScheduler(lease_duration=LEASE)
        self.schedulers: list[MemRoleScheduler] = []
        self.fleet = Fleet(ROLES, Monitor())
        self.asking: set[int] = set()

    def _run(self, seconds: float = 0.0) -> None:
        self.runner.run(asyncio.sleep(seconds))

    def _in_loop(self, fn: Callable[[], None]) -> None:
        async def call() -> None:
            fn()
            await asyncio.sleep(0)

        self.runner.run(call())

    @precondition(lambda self: len(self.schedulers) < MAX_MEMBERS)
    @rule()
    def join(self) -> None:
        scheduler = self.first if not self.schedulers else self.first.replica()
        self.schedulers.append(scheduler)

        async def join() -> int:
            return self.fleet.join(scheduler)

        self.asking.add(self.runner.run(join()))

    @precondition(lambda self: bool(self.asking))
    @rule(data=st.data())
    def leave(self, data: st.DataObject) -> None:
        member = data.draw(st.sampled_from(sorted(self.asking)))
        self.asking.discard(member)
        self.runner.run(self.fleet.leave(member))

    @precondition(lambda self: any(not s.stalled for s in self.schedulers))
    @rule(data=st.data())
    def stall(self, data: st.DataObject) -> None:
        live = [s for s in self.schedulers if not s.stalled]
        self._in_loop(data.draw(st.sampled_from(live)).stall)

    @precondition(lambda self: any(s.stalled for s in self.schedulers))
    @rule(data=st.data())
    def resume(self, data: st.DataObject) -> None:
        stalled = [s for s in self.schedulers if s.stalled]
        self._in_loop(data.draw(st.sampled_from(stalled)).resume)

    @rule(long=st.booleans())
    def tick(self, long: bool) -> None:
        self._run(LEASE.total_seconds() * 1.5 if long else 0.002)

    @invariant()
    def never_two_holders(self) -> None:
        assert self.fleet.monitor.overlaps == [], self.fleet.monitor.overlaps

    def teardown(self) -> None:
        try:
            for scheduler in self.schedulers:
                self._in_loop(scheduler.resume)
            if self.asking:
                self.runner.run(self._settled())
            assert self.fleet.monitor.overlaps == [], self.fleet.monitor.overlaps
        finally:
            self.runner.run(self.fleet.stop())
            self.runner.close()

    async def _settled(self) -> None:
        members = sorted(self.asking)
        try:
            async with asyncio.timeout(2):
                while self.fleet.spread(members) is None:
                    await asyncio.sleep(0.005)
        except TimeoutError:
            held = {r: self.fleet.monitor.inside.get(r) for r in ROLES}
            raise AssertionError(f"not spread over {members}: {held}") from None


FleetMachine.TestCase.settings = settings(
    max_examples=25,
    stateful_step_count=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestFleet = FleetMachine.TestCase

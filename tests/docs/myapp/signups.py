"""Sign-ups: a user signs up and is welcomed."""

from __future__ import annotations

import enum

import attrs

from luno_wf import Builder, Run


class SignUpStatus(enum.IntEnum):
    UNKNOWN = 0
    STARTED = 1
    WELCOMED = 2


@attrs.define
class User:
    id: str
    email: str = ""


async def welcome(r: Run[User, SignUpStatus]) -> SignUpStatus:
    return SignUpStatus.WELCOMED


def builder() -> Builder[User, SignUpStatus]:
    """The sign-up workflow, ready to build on adapters."""
    b = Builder("signups", User, SignUpStatus)
    b.add_step(SignUpStatus.STARTED, welcome, SignUpStatus.WELCOMED)
    return b

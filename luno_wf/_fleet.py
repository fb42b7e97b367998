"""How a fleet's roles are spread over its live members (rendezvous hashing, bounded loads).

Every member computes the same assignment from the same view of the fleet, with no
coordinator: each (role, member) pair has a pseudo-random weight (BLAKE2b of both names,
the same in every process and language), and a role goes to the member with the highest
weight for it, unless that member already has its share of the role's group, in which
case it goes to the next. So:

- when a member joins, the roles that move are mostly the ones it now ranks first for
  (about 1/N of them), and when one leaves, only its roles move;
- counts stay within one of even: the roles of one group are split ``q`` or ``q + 1`` per
  member, and the ``q + 1`` shares go to the members holding the fewest roles so far.

A *group* is the roles of one *family* wanted by the same members. Shards of one process
(luno names them ``<name>-<i>-of-<n>``) form a family, so the shards of a sharded step
spread over the members as evenly as they can (four shards over four members: one each);
all other roles form one family.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter, defaultdict
from collections.abc import Collection, Mapping

__all__ = ["role_family", "role_weight", "spread_roles"]

_SHARD = re.compile(r"^(?P<family>.+)-\d+-of-\d+$")


def role_family(role: str) -> str:
    """The family a role is spread with: ``"wf-1-consumer"`` for ``"wf-1-consumer-2-of-4"``.

    Roles that are not shards (no ``-<i>-of-<n>`` suffix) are all of the family ``""``.
    """
    match = _SHARD.match(role)
    return match.group("family") if match else ""


def role_weight(role: str, member: str) -> int:
    """The rendezvous weight of ``member`` for ``role``: a 64-bit hash of both names."""
    digest = hashlib.blake2b(
        role.encode() + b"\x00" + member.encode(), digest_size=8, person=b"luno_wf-roles"
    ).digest()
    return int.from_bytes(digest, "big")


def spread_roles(wants: Mapping[str, Collection[str]]) -> dict[str, str]:
    """The owner of each role: rendezvous (highest-random-weight) hashing, loads bounded.

    Args:
        wants: For each role, the live members that ask for it. A role nobody asks for
            has no owner.

    Returns:
        For each role with at least one member, the member that owns it. The result
        depends only on ``wants`` (not on its order), so every member that sees the
        same fleet computes the same owners.

    """
    groups: dict[tuple[str, tuple[str, ...]], list[str]] = defaultdict(list)
    for role, members in wants.items():
        if members:
            groups[(role_family(role), tuple(sorted(set(members))))].append(role)
    load: Counter[str] = Counter()
    owners: dict[str, str] = {}
    for (family, members), roles in sorted(groups.items()):
        share, extra = divmod(len(roles), len(members))
        # The members that take one more role of this group: the least loaded so far.
        fewest = sorted(members, key=lambda m: (load[m], -role_weight(family, m), m))
        room = {m: share for m in members}
        for member in fewest[:extra]:
            room[member] += 1
        pairs = sorted(
            ((role_weight(role, m), role, m) for role in roles for m in members), reverse=True
        )
        for _, role, member in pairs:
            if role not in owners and room[member] > 0:
                owners[role] = member
                room[member] -= 1
                load[member] += 1
    return owners

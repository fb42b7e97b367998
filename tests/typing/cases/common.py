import enum

import attrs


class TaskStatus(enum.IntEnum):
    UNKNOWN = 0
    CREATED = 1
    PROCESSED = 2
    COMPLETED = 3


class OtherStatus(enum.IntEnum):
    UNKNOWN = 0
    OPEN = 1


@attrs.define
class Task:
    id: str = ""


@attrs.define
class Other:
    name: str = ""

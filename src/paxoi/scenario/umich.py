"""The UMich EECS 591 (Winter 2017) server configuration format, read unchanged.

The course's files look like this (../shared/external-tests/umich/servers_test*.yaml):

    state_backup_folder: ../state_backup
    f: 2
    x: -1                    # the primary skips slot x (-1: off)
    num_failed_primary: -1   # kill the primary this many times (-1 or 0: off)
    msg_drop_rate: 0
    servers_list:
       0: {host: bigdata.eecs.umich.edu, port: 50000}
       ...

They list more servers than 2f+1 (six for f=1): only ids 0..2f are used. Validation
is strict, as for paxoi's own configuration, so a misspelt knob is refused rather than
silently ignored.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..core.errors import ConfigError

#: The keys that mark a file as the course's format rather than paxoi's.
UMICH_KEYS = frozenset({"servers_list", "state_backup_folder", "num_failed_primary", "x"})


class UmichServer(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    host: Annotated[str, Field(min_length=1)]
    port: Annotated[int, Field(ge=1, le=65535)]


class UmichConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    f: Annotated[int, Field(ge=0, le=10)]
    #: The primary skips this slot; -1: off.
    x: Annotated[int, Field(ge=-1)] = -1
    #: Kill the primary this many times, each after it committed some messages; -1, 0: off.
    num_failed_primary: Annotated[int, Field(ge=-1)] = -1
    msg_drop_rate: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0
    #: Where the servers keep their state (relative to the scenario's work directory).
    state_backup_folder: str | None = None
    servers_list: dict[int, UmichServer]

    @model_validator(mode="after")
    def _check(self) -> UmichConfig:
        needed = range(2 * self.f + 1)
        missing = [i for i in needed if i not in self.servers_list]
        if missing:
            raise ValueError(
                f"servers_list: f = {self.f} needs servers 0..{2 * self.f}; "
                f"missing {', '.join(str(i) for i in missing)}"
            )
        if self.num_failed_primary > self.f:
            raise ValueError(
                f"num_failed_primary: {self.num_failed_primary} is more than f = {self.f}; "
                "killing more than f servers leaves no majority (that is the no-majority "
                "scenario's point)"
            )
        return self

    @property
    def kill_primary(self) -> int:
        return max(0, self.num_failed_primary)

    def hosts(self) -> list[str]:
        """The hosts of the servers actually used (ids 0..2f)."""
        return [self.servers_list[i].host for i in range(2 * self.f + 1)]


def is_umich(data: dict[str, Any]) -> bool:
    """Does this mapping look like the course's format (rather than paxoi's own)?"""
    return bool(UMICH_KEYS & set(data))


def parse_umich(data: dict[str, Any], source: str) -> UmichConfig:
    """Validate; a ConfigError names each offending field."""
    try:
        return UmichConfig.model_validate(data)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            where = ".".join(str(p) for p in err["loc"]) or "(top level)"
            msg = err["msg"].removeprefix("Value error, ")
            problems.append(f"  {where}: {msg}")
        raise ConfigError(
            f"{source}: invalid UMich configuration\n" + "\n".join(problems)
        ) from None

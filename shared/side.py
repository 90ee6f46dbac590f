"""The two apps the bridge joins. One enum for every stage: an event's source, a map's side, apply's direction."""

from __future__ import annotations

from enum import StrEnum


class Side(StrEnum):
    FNO = "fno"
    DATAVERSE = "dataverse"

    @property
    def other(self) -> Side:
        return Side.DATAVERSE if self is Side.FNO else Side.FNO

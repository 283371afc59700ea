"""What part of the organisation a staff member may see."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Scope:
    """Everything (admin, marketer), one region, or one store."""

    region_id: int | None = None
    store_id: int | None = None

    @property
    def is_global(self) -> bool:
        return self.region_id is None and self.store_id is None


GLOBAL = Scope()

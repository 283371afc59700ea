"""Where a receipt, redemption or coupon comes from."""

from dataclasses import dataclass

from api.org.models import Store


@dataclass(frozen=True)
class Till:
    """Where a receipt comes from: a terminal of a store, or a staff member at the console."""

    store: Store
    terminal_id: int | None
    actor: str

    @classmethod
    def at_terminal(cls, store: Store, terminal_id: int) -> "Till":
        return cls(store=store, terminal_id=terminal_id, actor=f"terminal:{terminal_id}")

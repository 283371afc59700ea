"""The sidebar: which sections each role sees (the routes enforce the same roles)."""

from dataclasses import dataclass

from api.org.models import Role

A, M, RM, SM, C = Role.admin, Role.marketer, Role.region_manager, Role.store_manager, Role.cashier


@dataclass(frozen=True)
class Item:
    label: str
    path: str
    icon: str
    roles: frozenset[Role]


@dataclass(frozen=True)
class Section:
    title: str
    items: tuple[Item, ...]


def _item(label: str, path: str, icon: str, *roles: Role) -> Item:
    return Item(label, path, icon, frozenset(roles))


SECTIONS = (
    Section(
        "Overview",
        (
            _item("Dashboard", "/dashboard", "chart", A, M, RM, SM),
            _item("Lapse follow-up", "/insights/lapsed", "bell", A, M, RM, SM),
        ),
    ),
    Section("Till", (_item("Cashier screen", "/till", "scan", C, SM),)),
    Section(
        "Members",
        (
            _item("Find members", "/members", "users", A, M, RM, SM),
            _item("Import members", "/imports", "upload", A),
        ),
    ),
    Section(
        "Marketing",
        (
            _item("Campaigns", "/campaigns", "megaphone", A, M),
            _item("Rewards", "/settings/rewards", "gift", A, M),
        ),
    ),
    Section(
        "Programme",
        (
            _item("Settings", "/settings/program", "sliders", A, M),
            _item("Earning rules", "/settings/rules", "list", A, M),
            _item("Tiers", "/settings/tiers", "layers", A, M),
        ),
    ),
    Section(
        "Organisation",
        (
            _item("Regions & stores", "/org", "store", A),
            _item("Staff & roles", "/org/staff", "badge", A),
        ),
    ),
)


@dataclass(frozen=True)
class Link:
    label: str
    href: str
    icon: str
    active: bool


def _matches(current_path: str, href: str) -> bool:
    return current_path == href or current_path.startswith(href + "/")


def menu_for(role: str, current_path: str, base: str) -> list[tuple[str, list[Link]]]:
    """The sections and links this role sees, the page being shown (longest match) marked."""
    visible = [(s, [i for i in s.items if role in i.roles]) for s in SECTIONS]
    matching = [base + i.path for _, items in visible for i in items]
    active = max((h for h in matching if _matches(current_path, h)), key=len, default=None)
    return [
        (
            section.title,
            [Link(i.label, base + i.path, i.icon, base + i.path == active) for i in items],
        )
        for section, items in visible
        if items
    ]


def home_for(role: str) -> str:
    return "/till" if role == Role.cashier else "/dashboard"

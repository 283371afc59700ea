"""The house rules of docs/architecture.md, checked over the import graph of api/ and admin/."""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
ORDER = ["core", "org", "members", "loyalty", "insights", "push"]
LOYALTY_ORDER = ["program", "ledger", "till", "rewards"]
# Entities passed between domains as values (the caller, the place, the member) and enums.
VALUE_TYPES = {
    "api.org.models": {"Store", "Staff", "Role", "StoreKind", "Region", "Terminal"},
    "api.members.models": {"Member"},
    "api.push.models": {"Campaign"},
}
# Modules allowed to read another domain's tables directly (docs/architecture.md, the table).
CROSS_DOMAIN_READERS = {
    "api.insights.",
    "api.push.audience",
    "api.push.runs",
    "api.push.suppression",
    "api.push.report",
    "api.push.campaigns",
    "api.push.rewards",
    "api.loyalty.ledger.tiers",
}
# The loyalty subpackages read each other's models upward in these places only.
LOYALTY_UPWARD = {
    ("api.loyalty.ledger.tiers", "api.loyalty.till.models"),
}


def _modules() -> dict[str, ast.Module]:
    found = {}
    for top in ("api", "admin"):
        for path in (ROOT / top).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = ast.parse(path.read_text())
    return found


MODULES = _modules()


def _imports(tree: ast.Module) -> list[tuple[str, list[str]]]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [a.name for a in node.names]
            out.append((node.module, names))
            for name in names:  # `from api.loyalty.till import purchases` imports a module
                if f"{node.module}.{name}" in MODULES:
                    out.append((f"{node.module}.{name}", []))
        elif isinstance(node, ast.Import):
            out.extend((a.name, []) for a in node.names)
    return out


def _domain(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "api" and len(parts) > 2 else None


def _rank(module: str) -> int | None:
    domain = _domain(module)
    return ORDER.index(domain) if domain in ORDER else None


def test_nothing_imports_admin_a_router_or_main():
    bad = []
    for name, tree in MODULES.items():
        for target, _ in _imports(tree):
            if name.startswith("admin"):
                continue
            if target.startswith("admin") and name != "api.main":
                bad.append((name, target))
            if target.endswith("router") and name != "api.main":
                bad.append((name, target))
            if target == "api.main":
                bad.append((name, target))
    assert bad == []


def test_domains_import_only_downward():
    upward = []
    for name, tree in MODULES.items():
        mine = _rank(name)
        if mine is None:
            continue
        for target, _ in _imports(tree):
            theirs = _rank(target)
            if theirs is not None and theirs > mine:
                upward.append((name, target))
    assert upward == []


def test_loyalty_subpackages_import_only_downward():
    upward = []
    for name, tree in MODULES.items():
        if not name.startswith("api.loyalty."):
            continue
        mine = LOYALTY_ORDER.index(name.split(".")[2])
        for target, _ in _imports(tree):
            if target.startswith("api.loyalty.") and target.split(".")[2] in LOYALTY_ORDER:
                theirs = LOYALTY_ORDER.index(target.split(".")[2])
                if theirs > mine and (name, target) not in LOYALTY_UPWARD:
                    upward.append((name, target))
    assert upward == []


def test_cross_domain_table_reads_are_the_documented_ones():
    reads = []
    for name, tree in MODULES.items():
        if any(name.startswith(prefix) for prefix in CROSS_DOMAIN_READERS):
            continue
        for target, names in _imports(tree):
            if not target.endswith(".models") or target == "api.core.models":
                continue  # core's tables (idempotency, rate limits, access log) serve everyone
            if not target.startswith("api."):
                continue
            mine, theirs = _domain(name), _domain(target)
            if name.startswith("admin") or name.startswith("api.cli") or mine is None:
                theirs_ok = set(names) <= VALUE_TYPES.get(target, set())
                if not theirs_ok and not name.startswith("api.demo"):
                    reads.append((name, target, names))
                continue
            if theirs == mine:
                continue
            if not set(names) <= VALUE_TYPES.get(target, set()):
                reads.append((name, target, names))
    assert reads == []


def test_no_import_cycles():
    graph: dict[str, set[str]] = {name: set() for name in MODULES}
    for name, tree in MODULES.items():
        for target, _ in _imports(tree):
            if target in MODULES and target != name:
                graph[name].add(target)
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                pytest.fail("import cycle: " + " -> ".join([*stack[stack.index(nxt) :], nxt]))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)

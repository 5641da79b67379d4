"""Data flows one way: no module in backend/ imports from a layer above its own.

The chain is routes -> crud -> db -> models/config; the modules off that chain sit beside the
layer they serve (the HTTP side with the routes, migrations with the database) and the app that
assembles everything on top. Every module must be placed, so a new one is a decision, not a default.
Imports are read with `ast` (inside functions and `TYPE_CHECKING` blocks too), never executed.
"""

import ast
from pathlib import Path

import pytest

BACKEND = Path(__file__).resolve().parent.parent / "backend"

# Lowest first: a module may import from its own layer and the ones before it.
LAYERS: list[tuple[str, set[str]]] = [
    (
        "models/config",
        {
            "backend.config",
            "backend.database_url",
            "backend.models",
            "backend.schemas",
            "backend.openapi",
            "backend.logs",
            "backend.auth.jwt",
        },
    ),
    ("db", {"backend.db", "backend.migrate", "backend.migrations"}),
    ("crud", {"backend.crud"}),
    (
        "routes",
        {
            "backend.routes",
            "backend.dependencies",
            "backend.errors",
            "backend.security_log",
            "backend.middleware",
            "backend.metrics",
            "backend.http",
            "backend.lifecycle",
        },
    ),
    ("app", {"backend.main", "backend.docs", "backend.cli", "backend.__main__"}),
]
# Empty package markers: nothing to import from them but their modules.
PACKAGES = {"backend", "backend.auth", "backend.routes", "backend.migrations", "backend.migrations.versions"}


def module_name(path: Path) -> str:
    parts = path.relative_to(BACKEND.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(BACKEND.rglob("*.py"))}


def layer_of(module: str) -> int | None:
    """The index of the layer holding `module` (the longest listed prefix wins)."""
    best: tuple[int, int] | None = None
    for index, (_, members) in enumerate(LAYERS):
        for member in members:
            if (module == member or module.startswith(member + ".")) and (best is None or len(member) > best[0]):
                best = (len(member), index)
    return None if best is None else best[1]


def imported_modules(source: str) -> set[str]:
    """Every backend module `source` imports (`from backend import crud` names backend.crud)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == "backend")
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "backend":
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                found.add(candidate if candidate in MODULES else node.module)
    return found


def upward_imports(module: str, source: str) -> list[str]:
    """`importer -> imported (layer)` for each import of `source` that reaches above `module`'s layer."""
    own = layer_of(module)
    assert own is not None, f"{module} has no layer: add it to LAYERS in tests/test_layers.py"
    return [
        f"{module} ({LAYERS[own][0]}) -> {target} ({LAYERS[layer][0]})"
        for target in sorted(imported_modules(source))
        if (layer := layer_of(target)) is not None and layer > own
    ]


def test_every_module_has_a_layer() -> None:
    unplaced = [name for name in MODULES if name not in PACKAGES and layer_of(name) is None]
    assert unplaced == []
    assert all(MODULES[name].read_text().strip() == "" for name in PACKAGES & MODULES.keys())


@pytest.mark.parametrize("module", sorted(set(MODULES) - PACKAGES))
def test_no_import_reaches_a_higher_layer(module: str) -> None:
    assert upward_imports(module, MODULES[module].read_text()) == []


def test_the_check_sees_every_import_form() -> None:
    """The rule is not vacuous: each way of writing an upward import is reported."""
    source = """
import backend.routes.tasks
from backend import crud
from backend.errors import DATABASE_UNAVAILABLE
def later() -> None:
    from backend.main import create_app
from backend.config import Settings
from backend.db import Database
"""
    assert upward_imports("backend.db", source) == [
        "backend.db (db) -> backend.crud (crud)",
        "backend.db (db) -> backend.errors (routes)",
        "backend.db (db) -> backend.main (app)",
        "backend.db (db) -> backend.routes.tasks (routes)",
    ]
    assert upward_imports("backend.main", source) == []

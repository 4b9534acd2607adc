"""Architecture rules that import-linter cannot see: the functions are not packages of the
library (each is its own CodeUri folder with an ``app`` module), and "generic code never names a
destination" is about string literals, not imports. import-linter checks the rest in `make lint`."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FUNCTIONS = REPO / "functions"
LIBRARY = REPO / "layers" / "relay" / "relay"
DESTINATIONS = sorted(p.name for p in (LIBRARY / "destinations").iterdir() if (p / "__init__.py").exists())


def _imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            roots.add(node.module.split(".")[0])
    return roots


def _own_modules(function_dir: Path) -> set[str]:
    return {p.stem for p in function_dir.glob("*.py")} | {
        p.name for p in function_dir.iterdir() if p.is_dir() and (p / "__init__.py").exists()
    }


def test_functions_never_import_each_other() -> None:
    dirs = [d for d in FUNCTIONS.iterdir() if (d / "app.py").exists()]
    assert len(dirs) >= 6
    for function_dir in dirs:
        others = set().union(*(_own_modules(d) for d in dirs if d != function_dir)) - _own_modules(
            function_dir
        )
        for source in function_dir.rglob("*.py"):
            assert not (_imported_roots(source) & others), f"{source} imports another function's module"


def test_generic_code_never_names_a_destination() -> None:
    generic = [
        *(LIBRARY / "core").rglob("*.py"),
        *(LIBRARY / "executions").rglob("*.py"),
        *(FUNCTIONS / name / "app.py" for name in ("dispatch", "poll", "scheduler", "reconciler")),
        FUNCTIONS / "api" / "routes" / "executions.py",
        FUNCTIONS / "api" / "routes" / "status.py",
        *(
            REPO / "ops" / "relay_ops" / f"{name}.py"
            for name in ("dlq", "target", "watching", "render", "api")
        ),
    ]
    literal = re.compile("|".join(rf"[\"']{name}[\"']" for name in DESTINATIONS))
    assert DESTINATIONS == ["batch", "optimized", "optimove"]
    for source in generic:
        code = "\n".join(
            line for line in source.read_text().splitlines() if not line.lstrip().startswith("#")
        )
        assert not literal.search(code), f"{source} compares or names a destination"


def test_every_destination_is_registered() -> None:
    from relay import destinations
    from relay.executions import registry

    assert sorted(d.name for d in destinations.ALL) == DESTINATIONS
    assert sorted(d.name for d in registry.every()) == DESTINATIONS


FAILPOINT = re.compile(r"""failpoint\(\s*["']([^"']+)["']\s*\)""")


def _failpoints_in_code() -> list[str]:
    sources = [p for p in (*LIBRARY.rglob("*.py"), *FUNCTIONS.rglob("*.py")) if p.name != "failpoints.py"]
    return [name for source in sources for name in FAILPOINT.findall(source.read_text())]


def test_every_failpoint_is_crashed_at_by_a_test_and_documented() -> None:
    """A failpoint is a crash point with a test that crashes there and shows the work recovers
    (the README's table): a failpoint no test names is a crash point nobody checked. One name
    may mark the same step on several paths (a run re-queued after a 429, a 5xx or an expired
    slot leaves the same state), so names repeat only where the state left is the same."""
    names = sorted(set(_failpoints_in_code()))
    assert len(names) >= 30
    tests = "\n".join(p.read_text() for p in (REPO / "tests" / "integration").rglob("*.py"))
    untested = [name for name in names if f'"{name}"' not in tests]
    assert not untested, f"failpoints no integration test crashes at: {untested}"
    readme = (REPO / "README.md").read_text()
    undocumented = [name for name in names if f"`{name}`" not in readme]
    assert not undocumented, f"failpoints missing from the README's crash-safety table: {undocumented}"

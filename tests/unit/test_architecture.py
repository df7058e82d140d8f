"""engine/core stays pure: no IO frameworks, no database driver, no clock-driven scheduler."""

import ast
from pathlib import Path

import engine.core

FORBIDDEN = {"asyncpg", "litestar", "apscheduler", "asyncio", "uvicorn", "engine.store", "engine.services", "api"}


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_engine_core_imports_no_io_framework():
    core = Path(engine.core.__file__).parent
    files = list(core.rglob("*.py"))
    assert files
    for path in files:
        bad = {
            n
            for n in _imports(path)
            if n.split(".")[0] in FORBIDDEN or any(n.startswith(f + ".") or n == f for f in FORBIDDEN)
        }
        assert not bad, f"{path.relative_to(core)} imports {sorted(bad)}"


def test_sql_lives_only_in_engine_store():
    root = Path(engine.core.__file__).parents[2]
    for path in [
        *root.joinpath("api").rglob("*.py"),
        *root.joinpath("engine", "core").rglob("*.py"),
        *root.joinpath("engine", "services").rglob("*.py"),
    ]:
        text = path.read_text()
        for verb in ("SELECT ", "INSERT INTO", "UPDATE stock", "DELETE FROM"):
            assert verb not in text, f"{path.relative_to(root)} contains SQL ({verb.strip()})"


def test_no_raw_statements_outside_engine_store():
    root = Path(engine.core.__file__).parents[2]
    for path in [*root.joinpath("api").rglob("*.py"), *root.joinpath("engine", "services").rglob("*.py")]:
        text = path.read_text()
        assert "conn.execute(" not in text and "conn.fetch" not in text, f"{path.relative_to(root)} runs SQL"

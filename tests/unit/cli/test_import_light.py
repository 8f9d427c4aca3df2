"""``import loopml.cli`` stays light: the CLI starts fast whatever command runs."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = {
    "pandas", "sklearn", "numpy", "scipy", "fastapi", "uvicorn", "starlette", "alembic", "mlflow",
    "sqlalchemy", "httpx", "pydantic",
}  # fmt: skip


def _loaded_after(code: str) -> list[str]:
    report = f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {sorted(HEAVY)!r})))"
    probe = f"{code}\nimport json, sys\n{report}"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    loaded: list[str] = json.loads(done.stdout)
    return loaded


def test_importing_the_cli_loads_no_heavy_module() -> None:
    assert _loaded_after("import loopml.cli") == []


def test_building_the_command_tree_loads_neither_heavy_modules_nor_the_sdk() -> None:
    code = (
        "import sys, typer.main, loopml.cli\n"
        "typer.main.get_command(loopml.cli.app)\n"
        "assert 'loopml.sdk' not in sys.modules, 'loopml.sdk was imported'"
    )
    assert _loaded_after(code) == []


def test_the_probe_detects_a_heavy_import() -> None:
    assert "sqlalchemy" in _loaded_after("import loopml.sdk")

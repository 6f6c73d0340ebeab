"""The import direction of docs/ARCHITECTURE.md holds: no module imports a layer above its own.

core ← packs / lerobot / attest ← runtime ← audits ← governance ← training_hooks / reports ← cli. Every
``import`` statement counts, at module level or inside a function; the audit registry finds the audit
families by name (importlib), which is discovery, not a dependency.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"trustai": "trustai", "audits": "trustai.audits", "training_hooks": "trustai.training_hooks"}
FOLDERS |= {"reports": "trustai.reports"}

BELOW = {"base": set(), "core": {"base"}}
BELOW["packs"] = BELOW["core"] | {"core"}
BELOW["lerobot"] = BELOW["core"] | {"core"}
BELOW["attest"] = BELOW["core"] | {"core"}
BELOW["runtime"] = BELOW["packs"] | {"packs"}
BELOW["audits"] = BELOW["runtime"] | {"runtime", "lerobot"}
BELOW["governance"] = BELOW["audits"] | {"attest"}
BELOW["training_hooks"] = BELOW["governance"] | {"governance", "audits"}
BELOW["reports"] = BELOW["governance"] | {"governance"}
BELOW["dashboard"] = BELOW["reports"] | {"reports"}
BELOW["cli"] = BELOW["training_hooks"] | BELOW["dashboard"] | {"training_hooks", "dashboard", "audits"}


def layer(module: str) -> str:
    """The layer of a dotted ``trustai.…`` module name."""
    parts = module.split(".")
    if len(parts) == 1 or parts[1] in ("errors", "layout", "__main__"):
        return "base" if parts[-1] != "__main__" else "cli"
    name = parts[1]
    if name in BELOW:
        return name
    raise AssertionError(f"{module}: no layer for trustai.{name}; add it to BELOW and docs/ARCHITECTURE.md")


def modules() -> list[tuple[str, Path]]:
    found = []
    for folder, package in FOLDERS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            found.append((".".join([package, *parts]), path))
    return found


def imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return {n for n in names if n == "trustai" or n.startswith("trustai.")}


def test_every_module_has_a_layer() -> None:
    assert len(modules()) > 50
    for module, _ in modules():
        layer(module)


def test_no_module_imports_a_layer_above_its_own() -> None:
    wrong = []
    for module, path in modules():
        own = layer(module)
        for name in imported(path):
            other = layer(name)
            if other != own and other not in BELOW[own]:
                wrong.append(f"{path.relative_to(ROOT)} ({own}) imports {name} ({other})")
    assert not wrong, "\n".join(wrong)


def test_the_check_sees_a_violation(tmp_path: Path) -> None:
    upward = tmp_path / "upward.py"
    upward.write_text("def f():\n    from trustai.governance import Governance\n")
    assert imported(upward) == {"trustai.governance"}
    assert "governance" not in BELOW[layer("trustai.core.ledger")]

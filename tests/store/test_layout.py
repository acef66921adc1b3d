"""The store stays readable: no module over 600 lines, no class over 25 methods (a backend gets
its methods from one class per protocol, each counted on its own), and no backend module holds
SQL of a protocol: sqlite.py and postgres.py run transactions, nothing else."""

from __future__ import annotations

import ast
from pathlib import Path

import remediator.store

STORE = Path(remediator.store.__file__).parent
MODULES = sorted(STORE.glob("*.py"))


def test_no_store_module_is_longer_than_600_lines() -> None:
    lengths = {m.name: len(m.read_text(encoding="utf-8").splitlines()) for m in MODULES}
    assert max(lengths.values()) <= 600, lengths


def test_no_store_class_has_more_than_25_methods() -> None:
    for module in MODULES:
        tree = ast.parse(module.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                methods = [
                    n for n in node.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
                ]
                assert len(methods) <= 25, (module.name, node.name, len(methods))


def test_the_backends_hold_no_protocol_sql() -> None:
    for backend in ("sqlite.py", "postgres.py"):
        text = (STORE / backend).read_text(encoding="utf-8")
        for table in ("journal", "incidents", "claims", "approvals", "slack_outbox", "audit"):
            assert f"FROM {table}" not in text, (backend, table)
            assert f"INTO {table}" not in text, (backend, table)

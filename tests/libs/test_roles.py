"""The access table covers every RPC of herald.v1, no more, and docs/access.md is what it generates."""

import importlib
import pkgutil
from pathlib import Path

import herald.v1

from herald.libs import roles

DOCS = Path(__file__).resolve().parents[2] / "docs" / "access.md"


def test_every_public_rpc_has_one_rule() -> None:
    methods = {
        f"{service.full_name}/{method.name}"
        for module in pkgutil.iter_modules(herald.v1.__path__)
        if module.name.endswith("_pb2")
        for service in importlib.import_module(f"herald.v1.{module.name}").DESCRIPTOR.services_by_name.values()
        for method in service.methods
    }
    assert set(roles.RULES) == methods


def test_every_rule_lets_someone_call_it_and_admin_every_rpc_people_call() -> None:
    for method, rule in roles.RULES.items():
        assert rule.roles or rule.apps, method
        assert not rule.roles or roles.ADMIN in rule.roles, method
        assert rule.roles <= set(roles.ROLES), method


def test_the_docs_table_is_generated_from_the_rules() -> None:
    assert DOCS.read_text() == roles.markdown(), "run `python -m herald.libs.roles > docs/access.md`"

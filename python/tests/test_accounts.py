"""Organization policies and budgets from a real collector surface in Python as
``PermissionDeniedError`` / ``BudgetExceededError`` with the rule, level and budget."""

from __future__ import annotations

import json
import pathlib

import pytest

import gaterouter

VECTORS = pathlib.Path(__file__).resolve().parents[2] / "tests" / "vectors"


def _policy_client(emulator, collector) -> gaterouter.Client:
    """A client reporting as key ``k_py_policy`` (same signing key as the fixture's)."""
    config = collector.config(emulator, policy={"enforce": "required"}, retry={"max_retries": 0})
    config["identity"]["api_key_id"] = "k_py_policy"
    return gaterouter.Client(config)


@pytest.fixture(scope="module")
def policy_key(collector):
    public_key = json.loads((VECTORS / "records.json").read_text(encoding="utf-8"))["public_key"]
    report = collector.admin(
        "/v1/admin/org-tree",
        {
            "org": {"id": "acme", "name": "Acme"},
            "members": [{"id": "py-user", "name": "Py User"}],
            "keys": [
                {
                    "id": "k_py_policy",
                    "user": "py-user",
                    "public_key": public_key,
                    "policy": {"deny_models": ["gemini/*"]},
                    # One micro-dollar a day: any call's maximum cost exceeds it.
                    "budgets": [{"metric": "usd", "period": "day", "limit": "0.000001", "enforcement": "hard"}],
                }
            ],
        },
        method="PUT",
    )
    assert "key:k_py_policy" in report["created"], report
    return "k_py_policy"


def test_permission_error_names_rule_and_level(emulator, collector, policy_key):
    with _policy_client(emulator, collector) as client:
        with pytest.raises(gaterouter.PermissionDeniedError) as info:
            client.chat.completions.create(model="gemini/gemini-2.5-flash", messages=[{"role": "user", "content": "hi"}])
    e = info.value
    assert isinstance(e, gaterouter.GateRouterError)
    assert e.code == "PERMISSION_DENIED"
    assert (e.rule, e.level) == ("deny_models", "key:k_py_policy")
    assert "gemini/*" in str(e)
    assert e.budget is None


def test_budget_error_carries_the_budget(emulator, collector, policy_key):
    with _policy_client(emulator, collector) as client:
        with pytest.raises(gaterouter.BudgetExceededError) as info:
            client.chat.completions.create(model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], max_tokens=100)
    e = info.value
    assert e.code == "BUDGET_EXCEEDED"
    assert e.level == "key:k_py_policy" and e.rule is None
    b = e.budget
    assert b is not None
    assert (b["level"], b["metric"], b["period"], b["limit"], b["enforcement"]) == ("key:k_py_policy", "usd", "day", 1, "hard")
    assert b["remaining"] <= 1 and b["resets_at_ms"] > b["period_start_ms"]
    assert "resets at" in str(e)

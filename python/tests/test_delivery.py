"""Issue 16 from Python, against the real collector: a minimal identity loses no record,
a wrong identity fails loudly, refused records are counted, reported and warned about."""

from __future__ import annotations

import logging
import uuid
import warnings

import pytest

import gaterouter

MSG = [{"role": "user", "content": "hello"}]


def test_minimal_identity_takes_the_keys_binding(emulator, collector):
    run = uuid.uuid4().hex
    cfg = collector.config(emulator)
    cfg["identity"] = {"api_key_id": "k_py"}
    with gaterouter.Client(cfg) as client:
        client.chat.completions.create(model="openai/gpt-4o-mini", messages=MSG, metadata={"run": run})
        report = client.flush(timeout=20)
        assert isinstance(report, gaterouter.DeliveryReport)
        assert report.all_delivered and (report.delivered, report.refused, report.pending) == (1, 0, 0), report
    [rec] = collector.records(run)
    assert rec["org"] == "acme"


def test_a_wrong_identity_value_raises_config_error(emulator, collector):
    cfg = collector.config(emulator)
    cfg["identity"]["org"] = "not-acme"
    with pytest.raises(gaterouter.ConfigError) as e:
        gaterouter.Client(cfg)
    assert "identity.org" in str(e.value) and "not-acme" in str(e.value) and "acme" in str(e.value)


def test_refused_records_are_counted_reported_and_warned_once(emulator, collector, caplog):
    cfg = collector.config(emulator)
    cfg["identity"]["user"] = "ghost-user"  # not a member: the collector refuses the records
    caplog.set_level(logging.WARNING, logger="gaterouter")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        client = gaterouter.Client(cfg)
        for _ in range(3):
            client.chat.completions.create(model="openai/gpt-4o-mini", messages=MSG)
        report = client.flush(timeout=20)
        again = client.usage_status()
        client.close()
    assert report.drained and not report.all_delivered, report
    assert (report.delivered, report.refused, report.pending, report.dead_letters) == (0, 3, 0, 3), report
    assert report.last_refusal and "ghost-user" in report.last_refusal
    assert [(r.reason, r.count) for r in report.refusals] == [(report.last_refusal, 3)]
    assert again.refused == 3 and again.spool_dir
    refused = [w for w in caught if issubclass(w.category, gaterouter.UsageRefusedWarning)]
    assert len(refused) == 1, [str(w.message) for w in caught]
    assert "ghost-user" in str(refused[0].message)
    logged = [r for r in caplog.records if r.name == "gaterouter" and "refused usage records" in r.getMessage()]
    assert len(logged) == 1

"""Outcome feedback from Python (issue 20), against the real collector: responses and a
stream's usage chunk name their usage record, ``client.feedback`` sends a signed rating
that is delivered with the usage records (same delivery report) and shows in the
collector's ``outcomes`` report; bad input raises ``InvalidRequestError`` naming the field."""

from __future__ import annotations

import asyncio
import math
import re
import uuid
from typing import Any, Dict

import pytest

import gaterouter

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
MSG = [{"role": "user", "content": "hello"}]


def _outcomes(collector: Any, run: str) -> Dict[str, Dict[str, Any]]:
    """The ``outcomes`` report by model over this run's calls, rows keyed by model."""
    v = collector.get(f"/v1/analytics/outcomes?by=model&tag=run:{run}")
    return {row["group"]: row for row in v["rows"]}


def test_feedback_on_a_call_and_a_stream_is_delivered_and_joins_its_calls(emulator, collector):
    run = uuid.uuid4().hex
    with gaterouter.Client(collector.config(emulator)) as client:
        resp = client.chat.completions.create(model="openai/gpt-4o-mini", messages=MSG, metadata={"run": run})
        assert isinstance(resp.usage_record_id, str) and UUID.match(resp.usage_record_id), resp.usage_record_id
        assert resp.to_dict()["usage_record_id"] == resp.usage_record_id

        stream = client.chat.completions.create(model="anthropic/claude-haiku-4-5", messages=MSG, stream=True, metadata={"run": run})
        chunks = list(stream)
        last = chunks[-1]
        assert last.usage is not None and last.usage_record_id is not None and UUID.match(last.usage_record_id)
        assert all(c.usage_record_id is None for c in chunks[:-1])
        assert stream.usage_record_id == last.usage_record_id != resp.usage_record_id

        fb1 = client.feedback(resp.usage_record_id, 1.0, label="thumbs_up", tags={"surface": "chat"})
        fb2 = client.feedback(last.usage_record_id, 0.25, source="evaluator")
        assert UUID.match(fb1) and UUID.match(fb2) and len({fb1, fb2, resp.usage_record_id, last.usage_record_id}) == 4

        report = client.flush(timeout=20)
        assert report.all_delivered, report
        assert (report.delivered, report.refused, report.pending) == (4, 0, 0), "2 calls + 2 feedback records: %r" % (report,)

    rows = _outcomes(collector, run)
    assert (rows["gpt-4o-mini"]["calls"], rows["gpt-4o-mini"]["rated_calls"], rows["gpt-4o-mini"]["mean_score"]) == (1, 1, 1.0), rows
    assert (rows["claude-haiku-4-5"]["calls"], rows["claude-haiku-4-5"]["rated_calls"], rows["claude-haiku-4-5"]["mean_score"]) == (1, 1, 0.25), rows


@pytest.mark.parametrize(
    "args, kwargs, field",
    [
        (("RID", 1.5), {}, "score"),
        (("RID", -0.1), {}, "score"),
        (("RID", math.nan), {}, "score"),
        (("nope", 1.0), {}, "record_id"),
        (("RID", 1.0), {"source": "robot"}, "source"),
        (("RID", 1.0), {"label": "x" * 65}, "label"),
    ],
)
def test_bad_feedback_raises_invalid_request_naming_the_field(emulator, collector, args, kwargs, field):
    run = uuid.uuid4().hex
    with gaterouter.Client(collector.config(emulator)) as client:
        resp = client.chat.completions.create(model="openai/gpt-4o-mini", messages=MSG, metadata={"run": run})
        assert resp.usage_record_id is not None
        record_id, score = args
        with pytest.raises(gaterouter.InvalidRequestError) as e:
            client.feedback(resp.usage_record_id if record_id == "RID" else record_id, score, **kwargs)
        assert e.value.field == field, (e.value.field, str(e.value))
        assert e.value.code == "INVALID_REQUEST"
        # Nothing was spooled: only the call is delivered.
        report = client.flush(timeout=20)
        assert (report.delivered, report.refused, report.pending) == (1, 0, 0), report
    assert _outcomes(collector, run)["gpt-4o-mini"]["rated_calls"] == 0


def test_every_error_has_a_field_attribute(emulator):
    """``field`` names the offending field of the core's own validation errors, and is
    ``None`` on the others (here a provider refusing the credentials)."""
    client = gaterouter.Client(emulator.config(retry={"max_retries": 0}))
    with pytest.raises(gaterouter.InvalidRequestError) as e:
        client.chat.completions.create(model="openai/gpt-4o", messages=[{"role": "user", "content": "x"}], temperature=7)
    assert e.value.field is not None and "temperature" in e.value.field, e.value.field
    emulator.fault(fault="auth", provider="openai", times=1)
    with pytest.raises(gaterouter.AuthenticationError) as auth:
        client.chat.completions.create(model="openai/gpt-4o", messages=MSG)
    assert auth.value.field is None


def test_feedback_without_usage_records_is_a_config_error(emulator):
    with gaterouter.Client(emulator.config()) as client:
        resp = client.chat.completions.create(model="openai/gpt-4o-mini", messages=MSG)
        assert resp.usage_record_id is None
        stream = client.chat.completions.create(model="openai/gpt-4o-mini", messages=MSG, stream=True)
        chunks = list(stream)
        assert chunks[-1].usage is not None and all(c.usage_record_id is None for c in chunks)
        assert stream.usage_record_id is None
        with pytest.raises(gaterouter.ConfigError) as e:
            client.feedback("0193c1f0-7a2b-7c3d-8e4f-5a6b7c8d9e0f", 1.0)
        assert "feedback needs usage records" in str(e.value)


def test_async_client_feedback(emulator, collector):
    run = uuid.uuid4().hex

    async def main() -> gaterouter.DeliveryReport:
        async with gaterouter.AsyncClient(collector.config(emulator)) as client:
            resp = await client.chat.completions.create(model="gemini/gemini-2.5-flash", messages=MSG, metadata={"run": run})
            assert resp.usage_record_id is not None
            stream = await client.chat.completions.create(model="gemini/gemini-2.5-flash", messages=MSG, stream=True, metadata={"run": run})
            async for _ in stream:
                pass
            assert stream.usage_record_id is not None and stream.usage_record_id != resp.usage_record_id
            assert UUID.match(client.feedback(resp.usage_record_id, 0.0, label="thumbs_down"))
            assert UUID.match(client.feedback(stream.usage_record_id, 1.0, source="implicit"))
            with pytest.raises(gaterouter.InvalidRequestError) as e:
                client.feedback(resp.usage_record_id, 2.0)
            assert e.value.field == "score"
            return await client.flush(timeout=20)

    report = asyncio.run(main())
    assert report.all_delivered and (report.delivered, report.refused) == (4, 0), report
    row = _outcomes(collector, run)["gemini-2.5-flash"]
    assert (row["calls"], row["rated_calls"], row["mean_score"]) == (2, 2, 0.5), row


def test_shadow_sampling_returns_the_other_arms_answer_to_rate(emulator, collector):
    """An org that turns shadow sampling on (every plain ``auto`` call here) gets the
    other arm's answer on ``resp.shadow``: a ``ChatCompletion`` with its own usage record,
    naming the call it shadows; both are rated, both delivered. A stream is never
    shadowed. The org's settings are put back afterwards (the collector is shared)."""
    routing = "/v1/admin/orgs/acme/routing"
    collector.admin(routing, {"learning": True, "explore_permille": 0, "shadow_permille": 1000}, method="PUT")
    try:
        run = uuid.uuid4().hex
        with gaterouter.Client(collector.config(emulator)) as client:
            resp = client.chat.completions.create(model="auto", messages=MSG, metadata={"run": run})
            shadow = resp.shadow
            assert isinstance(shadow, gaterouter.ChatCompletion), resp.to_dict()
            assert resp.shadow_error is None
            assert shadow.shadow is None and shadow.model != resp.model
            assert UUID.match(shadow.usage_record_id) and shadow.usage_record_id != resp.usage_record_id
            assert shadow.route.shadow_of == resp.usage_record_id
            assert (resp.route.tier == "heavy") != (shadow.route.tier == "heavy"), (resp.route.tier, shadow.route.tier)
            assert shadow.cost.total_micros >= 0 and shadow.choices[0].message.content
            client.feedback(resp.usage_record_id, 1.0, source="evaluator")
            client.feedback(shadow.usage_record_id, 0.0, source="evaluator")

            stream = client.chat.completions.create(model="auto", messages=MSG, stream=True, metadata={"run": run})
            list(stream)
            report = client.flush(timeout=20)
            assert (report.delivered, report.refused, report.pending) == (5, 0, 0), "call, shadow, stream + 2 ratings: %r" % (report,)
        models = sorted(r["model"] for r in collector.records(run))
        assert len(models) == 3 and resp.model.split("/", 1)[1] in models and shadow.model.split("/", 1)[1] in models, models
    finally:
        collector.admin(routing, {"learning": False, "explore_permille": 50}, method="PUT")

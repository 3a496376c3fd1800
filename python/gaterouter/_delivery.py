"""What became of the usage records: :class:`DeliveryReport`, and the warnings raised
when the collector refuses records (once per distinct reason, never silently)."""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass, field
from typing import Any, List, Mapping, Optional

__all__ = ["DeliveryReport", "RefusalCount", "GateRouterWarning", "UsageRefusedWarning"]

logger = logging.getLogger("gaterouter")


class GateRouterWarning(UserWarning):
    """Base class of the warnings GateRouter emits."""


class UsageRefusedWarning(GateRouterWarning):
    """The collector refused usage records (they were moved to the spool's dead-letter
    file). Emitted once per distinct reason; the counts are in :class:`DeliveryReport`."""


@dataclass(frozen=True)
class RefusalCount:
    """Records refused for one reason."""

    reason: str
    count: int


@dataclass(frozen=True)
class DeliveryReport:
    """Returned by ``client.flush()`` and ``client.usage_status()``.

    ``drained`` only says nothing is pending: refused records leave the spool too, so
    check ``refused`` (or ``all_delivered``)."""

    drained: bool
    delivered: int
    pending: int
    refused: int
    refusals: List[RefusalCount] = field(default_factory=list)
    last_refusal: Optional[str] = None
    dead_letters: int = 0
    overflow: int = 0
    oldest_pending_age_ms: Optional[int] = None
    last_error: Optional[str] = None
    spool_dir: Optional[str] = None

    @property
    def all_delivered(self) -> bool:
        """Drained, and nothing refused or dropped: every record reached the collector."""
        return self.drained and self.refused == 0 and self.overflow == 0

    @classmethod
    def _from_json(cls, raw: str) -> "DeliveryReport":
        d: Mapping[str, Any] = json.loads(raw)
        return cls(
            drained=bool(d["drained"]),
            delivered=int(d["delivered"]),
            pending=int(d["pending"]),
            refused=int(d["refused"]),
            refusals=[RefusalCount(reason=r["reason"], count=int(r["count"])) for r in d.get("refusals", [])],
            last_refusal=d.get("last_refusal"),
            dead_letters=int(d.get("dead_letters", 0)),
            overflow=int(d.get("overflow", 0)),
            oldest_pending_age_ms=d.get("oldest_pending_age_ms"),
            last_error=d.get("last_error"),
            spool_dir=d.get("spool_dir"),
        )


def _surface_refusals(native: Any) -> None:
    """Turn refusal reasons the core saw for the first time into a warning and a log
    line each (``warnings`` and the ``gaterouter`` logger: both visible by default)."""
    for reason in json.loads(native.take_refusal_warnings()):
        msg = (
            f"the collector refused usage records: {reason} "
            "(they are in the spool's dead-letter file; see client.usage_status() or `gaterouter spool status`)"
        )
        logger.warning(msg)
        warnings.warn(msg, UsageRefusedWarning, stacklevel=3)

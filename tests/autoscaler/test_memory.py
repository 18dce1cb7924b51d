"""What the autoscaler keeps of a tier in the state store: the decision's History, field by field, and back the same;
a key the History no longer has is ignored, a field missing or stored in a shape its type no longer takes gets its
default (the decision's History may change without a migration)."""

from __future__ import annotations

import json
import math

from crane_iac.autoscaler.decision import Direction, History
from crane_iac.autoscaler.memory import TierMemory, dump_history, load_history

HISTORY = History(last_action_at=1000.5, last_direction=Direction.OUT, recommendations=((940.0, 3), (1000.5, 4)),
                  readings=((940.0, 0.81, 3), (1000.5, 0.86, 3)))


def test_a_history_goes_through_json_and_comes_back_the_same() -> None:
    stored = json.loads(json.dumps(dump_history(HISTORY)))
    assert stored["last_direction"] == "out" and stored["recommendations"] == [[940.0, 3], [1000.5, 4]]
    back = load_history(stored)
    assert back == HISTORY and isinstance(back.last_direction, Direction) and isinstance(back.readings[0], tuple)
    assert load_history(dump_history(History())) == History()


def test_unknown_keys_are_ignored_and_missing_or_misshapen_fields_defaulted() -> None:
    stored = {**dump_history(HISTORY), "a_field_removed_since": [1, 2]}
    del stored["readings"]
    stored["recommendations"] = "not a list of pairs"
    back = load_history(stored)
    assert back.last_action_at == 1000.5 and back.last_direction is Direction.OUT
    assert back.readings == () and back.recommendations == ()
    assert load_history({"last_direction": "sideways"}).last_direction is None
    assert load_history(None) == load_history([1]) == History()


def test_a_tiers_memory_keeps_the_servers_first_seen_with_warmed_up_ones_as_null() -> None:
    memory = TierMemory(HISTORY, {"shop-web-1": -math.inf, "shop-web-3": 1000.5})
    stored = json.loads(json.dumps(memory.to_json(), allow_nan=False))
    assert stored["first_seen"] == {"shop-web-1": None, "shop-web-3": 1000.5}
    assert TierMemory.from_json(stored) == memory
    assert TierMemory.from_json("garbage") == TierMemory() == TierMemory.from_json({"first_seen": [1]})

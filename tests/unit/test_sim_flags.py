"""The simulator's flag effect evaluates through OpenFeature + flagd (file resolver), like an app."""

import json
import time
from pathlib import Path

import pytest

from hemostat.sim.behaviour import Behaviour, PodRef, ReadyPod
from hemostat.sim.flags import FLAG_ERRORS, FLAG_SOURCE, FlagEffect, parse

ANN = {FLAG_ERRORS: "new-pricing=0.4", FLAG_SOURCE: "flags/flags.flagd.json"}


def flagd(default: str, targeting: dict | None = None) -> str:
    flag = {"state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": default}
    if targeting is not None:
        flag["targeting"] = targeting
    return json.dumps({"flags": {"new-pricing": flag}})


def pod(annotations: dict) -> ReadyPod:
    return ReadyPod(PodRef("shop", "pricing", "h", "pricing-0"), Behaviour(error_rate=0.01), annotations)


def test_parse() -> None:
    assert parse(ANN) == ("new-pricing", 0.4, "flags/flags.flagd.json")
    assert parse({FLAG_ERRORS: "x=0.1", FLAG_SOURCE: "featureflag:shop"}) == ("x", 0.1, "featureflag:shop")
    assert parse({FLAG_ERRORS: "x=2", FLAG_SOURCE: "a/b"}) is None  # rate out of range
    assert parse({FLAG_ERRORS: "x=0.1"}) is None


def test_errors_follow_the_flag_including_targeting(tmp_path: Path) -> None:
    store = {"flags/flags.flagd.json": flagd("off", {"if": [True, "on", "off"]})}  # targeting beats the default
    effect = FlagEffect(lambda ns, source: store.get(source) if ns == "shop" else None, tmp_path, refresh=0)
    (on,) = effect([pod(ANN)])
    assert on.behaviour.error_rate == pytest.approx(0.41)
    store["flags/flags.flagd.json"] = flagd("off")  # the kill switch: no targeting, default off
    deadline = time.monotonic() + 5  # the file resolver polls the file
    while time.monotonic() < deadline:
        (off,) = effect([pod(ANN)])
        if off.behaviour.error_rate == 0.01:
            break
        time.sleep(0.1)
    assert off.behaviour.error_rate == 0.01


def test_pods_without_the_annotations_are_untouched(tmp_path: Path) -> None:
    effect = FlagEffect(lambda ns, name: None, tmp_path)
    plain = pod({})
    assert effect([plain]) == [plain]

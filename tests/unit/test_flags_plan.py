"""disableFlag planning: a real kill switch, not the `state: DISABLED` trap."""

import json
from datetime import UTC, datetime

import pytest

from hemostat.actions.base import MARKER, Done, Plan, Skip, marker_value
from hemostat.actions.flags import PREVIOUS, facts_from, off_variant, plan
from hemostat.models.policy import DisableFlagStep

NOW = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)
TARGETED = {
    "state": "ENABLED",
    "variants": {"on": True, "off": False},
    "defaultVariant": "off",
    "targeting": {"if": [True, "on", "off"]},
}


def cm(
    flags: dict | None = None, annotations: dict | None = None, key: str = "flags.flagd.json", opted_in: bool = True
) -> dict:
    data = {key: json.dumps({"flags": flags if flags is not None else {"new-pricing": TARGETED}})}
    labels = {"hemostat.dev/flag-source": "true"} if opted_in else {"app": "pricing"}
    meta = {"name": "flags", "resourceVersion": "9", "annotations": annotations or {}, "labels": labels}
    return {"metadata": meta, "data": data}


def do(configmap: dict, flag: str = "new-pricing", off: str | None = None):
    step = DisableFlagStep.model_validate({"configMap": {"name": "flags", "flag": flag}, "offVariant": off})
    return plan(facts_from(configmap), step, incident="inc", index=1, now=NOW)


def test_kill_switch_sets_default_off_drops_targeting_and_keeps_the_previous_spec() -> None:
    got = do(cm())
    assert isinstance(got, Plan) and (got.kind, got.name) == ("ConfigMap", "flags")
    new = json.loads(got.patch[1]["value"])["flags"]["new-pricing"]
    assert new == {"state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": "off"}
    assert got.patch[1]["path"] == "/data/flags.flagd.json"
    previous = json.loads(got.patch[3]["value"])
    assert got.patch[3]["path"] == "/metadata/annotations/hemostat.dev~1previous-flags"
    assert previous == {"new-pricing": TARGETED}
    assert got.from_ == "flag new-pricing: state ENABLED, defaultVariant off, targeting set"
    assert got.to == "state ENABLED, defaultVariant off, no targeting"


def test_a_disabled_flag_is_re_enabled_on_its_off_variant() -> None:
    # DISABLED would make apps use their code default, which may be "on"
    got = do(cm({"new-pricing": {"state": "DISABLED", "variants": {"on": True, "off": False}, "defaultVariant": "on"}}))
    new = json.loads(got.patch[1]["value"])["flags"]["new-pricing"]
    assert (new["state"], new["defaultVariant"]) == ("ENABLED", "off")


@pytest.mark.parametrize(
    ("configmap", "flag", "reason"),
    [
        (cm(key="other.json"), "new-pricing", "ConfigMap flags key flags.flagd.json does not exist"),
        (cm(), "missing", "flag missing is not defined in ConfigMap flags key flags.flagd.json"),
        (
            cm({"color": {"variants": {"red": "r", "blue": "b"}, "defaultVariant": "red"}}),
            "color",
            "flag color in ConfigMap flags key flags.flagd.json has no off variant (variants: blue, red); "
            "set disableFlag.offVariant",
        ),
        (
            cm({"new-pricing": {"state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": "off"}}),
            "new-pricing",
            "flag new-pricing in ConfigMap flags key flags.flagd.json already serves off to everyone",
        ),
    ],
)
def test_skips_say_why(configmap: dict, flag: str, reason: str) -> None:
    assert do(configmap, flag) == Skip(reason)


def test_not_flagd_json_is_skipped() -> None:
    broken = cm()
    broken["data"]["flags.flagd.json"] = "not json"
    assert do(broken) == Skip(
        "ConfigMap flags key flags.flagd.json is not flagd flag JSON (no top-level 'flags' object)"
    )


def test_off_variant_choice() -> None:
    assert off_variant({"variants": {"enabled": True, "disabled": False}}, None) == "disabled"
    assert off_variant({"variants": {"a": "x", "off": "y"}}, None) == "off"
    assert off_variant({"variants": {"a": 1}}, "a") == "a" and off_variant({"variants": {"a": 1}}, "b") is None


def test_marker_means_done() -> None:
    marker = marker_value("inc", 1, "disableFlag", "a", "b", "2026-11-23T13:59:00Z")
    assert do(cm(annotations={MARKER: marker})) == Done("disableFlag", "a", "b", "2026-11-23T13:59:00Z")
    assert PREVIOUS == "hemostat.dev/previous-flags"


def featureflag(flags: dict, annotations: dict | None = None, opted_in: bool = True) -> dict:
    labels = {"hemostat.dev/flag-source": "true"} if opted_in else {}
    return {
        "metadata": {"name": "shop-flags", "resourceVersion": "3", "annotations": annotations or {}, "labels": labels},
        "spec": {"flagSpec": {"flags": flags}},
    }


def test_a_featureflag_that_did_not_opt_in_is_never_changed() -> None:
    """Anyone who may write a policy could otherwise flip any FeatureFlag of the namespace with the
    operator's rights: FeatureFlags opt in as ConfigMaps do."""
    from hemostat.actions.flags import plan_featureflag

    step = DisableFlagStep.model_validate({"featureFlag": {"name": "shop-flags", "flag": "new-pricing"}})
    got = plan_featureflag(featureflag({"new-pricing": TARGETED}, opted_in=False), step, incident="i", index=0, now=NOW)
    assert got == Skip(
        "FeatureFlag shop-flags is not labelled hemostat.dev/flag-source=true: Hemostat changes only flag sources "
        "that opt in (kubectl label featureflag shop-flags hemostat.dev/flag-source=true)"
    )


def test_featureflag_resource_gets_the_same_kill_switch() -> None:
    from hemostat.actions.flags import plan_featureflag

    step = DisableFlagStep.model_validate({"featureFlag": {"name": "shop-flags", "flag": "new-pricing"}})
    got = plan_featureflag(featureflag({"new-pricing": TARGETED}), step, incident="inc", index=0, now=NOW)
    assert isinstance(got, Plan) and (got.kind, got.name) == ("FeatureFlag", "shop-flags")
    assert got.patch[1] == {
        "op": "replace",
        "path": "/spec/flagSpec/flags/new-pricing",
        "value": {"state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": "off"},
    }
    assert got.patch[2]["path"] == "/metadata/annotations"  # no annotations yet: the marker creates the map
    assert json.loads(got.patch[3]["value"]) == {"new-pricing": TARGETED}
    missing = plan_featureflag(featureflag({}), step, incident="inc", index=0, now=NOW)
    assert missing == Skip("flag new-pricing is not defined in FeatureFlag shop-flags")


def test_a_configmap_that_did_not_opt_in_is_never_changed() -> None:
    got = do(cm(opted_in=False))
    assert got == Skip(
        "ConfigMap flags is not labelled hemostat.dev/flag-source=true: Hemostat changes only ConfigMaps "
        "that opt in (kubectl label configmap flags hemostat.dev/flag-source=true)"
    )


def test_verify_asks_openfeature_to_confirm_what_the_patched_source_holds() -> None:
    from hemostat.actions import flags
    from hemostat.actions.base import Objects, Verified

    source = cm()
    got = do(source)
    assert isinstance(got, Plan)
    patched = json.loads(json.dumps(source))
    patched["data"]["flags.flagd.json"] = next(op["value"] for op in got.patch if op["path"].startswith("/data/"))
    objects = Objects({"metadata": {"name": "web"}}, sources={("ConfigMap", "flags"): source})
    verdict = flags.STEP.verify(objects, got, patched)
    assert verdict.ok and verdict.evaluate is not None
    assert (verdict.evaluate.flag, verdict.evaluate.variant) == ("new-pricing", "off")
    assert json.loads(verdict.evaluate.before) == json.loads(source["data"]["flags.flagd.json"])
    assert flags.STEP.verify(objects, got, source) == Verified(
        False, "the ConfigMap does not hold the planned change after the patch"
    )

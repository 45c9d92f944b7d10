"""The kill switch: errors caused by a flag on an old, stable revision end when the flag is turned off.

The flag lives in flagd JSON in a ConfigMap, or in an OpenFeature Operator FeatureFlag; the
simulator evaluates it like an app (OpenFeature SDK, flagd provider) and the operator confirms
the result the same way.
"""

from __future__ import annotations

import json

import pytest
from conftest import ROOT, Cluster, deployment, wait_for
from scenarios import policy, wait_phase

FLAG = {
    "state": "ENABLED",
    "variants": {"on": True, "off": False},
    "defaultVariant": "off",
    "targeting": {"if": [{"in": ["beta", {"var": "groups"}]}, "off", "on"]},  # everyone but beta: on
}
SOURCES = {
    "configmap": (
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "flags", "labels": {"hemostat.dev/flag-source": "true"}},  # the opt-in
            "data": {"flags.flagd.json": json.dumps({"flags": {"new-pricing": FLAG}})},
        },
        "flags/flags.flagd.json",
        {"configMap": {"name": "flags", "flag": "new-pricing"}},
    ),
    "featureflag": (
        {
            "apiVersion": "core.openfeature.dev/v1beta1",
            "kind": "FeatureFlag",
            "metadata": {"name": "flags", "labels": {"hemostat.dev/flag-source": "true"}},  # the opt-in
            "spec": {"flagSpec": {"flags": {"new-pricing": FLAG}}},
        },
        "featureflag:flags",
        {"featureFlag": {"name": "flags", "flag": "new-pricing"}},
    ),
}


@pytest.fixture(scope="module")
def featureflag_crd(testenv: Cluster) -> None:
    # The OpenFeature Operator's own CRD (0.9.2, unmodified): the API server validates the kill-switch patch.
    crd = (
        ROOT
        / "tests"
        / "e2e"
        / "fixtures"
        / "crds"
        / "open-feature-operator"
        / "core.openfeature.dev_featureflags.yaml"
    )
    testenv.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crd))
    testenv.kubectl("wait", "--for=condition=Established", "crd/featureflags.core.openfeature.dev", "--timeout=60s")


def stored_flag(testenv: Cluster, ns: str, kind: str) -> tuple[dict, dict]:
    if kind == "configmap":
        cm = testenv.get("configmap", "flags", ns)
        return json.loads(cm["data"]["flags.flagd.json"])["flags"]["new-pricing"], cm["metadata"]["annotations"]
    ff = testenv.get("featureflags.core.openfeature.dev", "flags", ns)
    return ff["spec"]["flagSpec"]["flags"]["new-pricing"], ff["metadata"]["annotations"]


@pytest.mark.image
@pytest.mark.parametrize("kind", list(SOURCES))
def test_flag_errors_are_stopped_by_the_kill_switch(
    testenv: Cluster, namespace: str, simulator, operators, featureflag_crd: None, kind: str
) -> None:
    source, sim_source, step = SOURCES[kind]
    operators.start(namespace)
    testenv.apply(source, namespace)
    annotations = {"sim.hemostat.dev/flag-errors": "new-pricing=0.4", "sim.hemostat.dev/flag-source": sim_source}
    testenv.apply(deployment("pricing", annotations=annotations), namespace)
    steps = [{"rollback": {}}, {"disableFlag": step}]
    # errors end ~1.5 s after the patch (sim refresh 1 s + flagd file poll 0.5 s), then must leave
    # the 5 s rate window and be scraped (1 s): ~8 s before the signal reads healthy
    testenv.apply(policy("pricing", steps=steps, verify_for="10s"), namespace)

    inc = wait_phase(testenv, namespace, "Resolved", timeout=120)
    rollback, kill = inc["status"]["actions"]
    assert (rollback["result"], rollback["message"]) == ("Skipped", "no revision older than 1 is left to roll back to")
    assert (kill["step"], kill["result"]) == ("disableFlag", "Succeeded")
    assert kill["from"] == "flag new-pricing: state ENABLED, defaultVariant off, targeting set"
    assert kill["to"] == "state ENABLED, defaultVariant off, no targeting"
    # variant before and after, as OpenFeature (flagd provider) evaluates them
    assert kill["message"] == (
        "OpenFeature evaluation of new-pricing: variant on (TARGETING_MATCH) -> variant off (STATIC)"
    )
    reasons = [e["reason"] for e in inc["status"]["timeline"]]
    assert reasons == ["Detected", "Attributed", "MitigationSkipped", "FlagDisabled", "Recovered"]
    flag, stored_annotations = stored_flag(testenv, namespace, kind)
    assert flag == {"state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": "off"}
    # what a person needs to restore it
    assert json.loads(stored_annotations["hemostat.dev/previous-flags"]) == {"new-pricing": FLAG}
    wait_for("pricing untouched", lambda: testenv.get("deployment", "pricing", namespace)["spec"]["replicas"] == 2, 5)


def test_a_missing_flag_source_is_an_explained_skip(
    testenv: Cluster, namespace: str, simulator, operators, featureflag_crd: None
) -> None:
    operators.start(namespace)
    testenv.apply(deployment("orphan", annotations={"sim.hemostat.dev/error-rate": "0.5"}), namespace)
    steps = [{"disableFlag": {"featureFlag": {"name": "nowhere", "flag": "x"}}}]
    testenv.apply(policy("orphan", steps=steps, verify_for="4s"), namespace)
    inc = wait_phase(testenv, namespace, "Escalated", timeout=90)
    (skip,) = inc["status"]["actions"]
    assert skip["result"] == "Skipped"
    assert skip["message"] == "FeatureFlag nowhere does not exist (or its CRD is not installed)"

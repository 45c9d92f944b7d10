"""The kill switch: errors caused by a flag on an old, stable revision end when the flag is turned off.

The flag lives in flagd JSON in a ConfigMap; the simulator evaluates it like an app
(OpenFeature SDK, flagd provider) and the operator confirms the result the same way.
"""

from __future__ import annotations

import json

from conftest import Cluster, deployment, wait_for
from scenarios import policy, wait_phase

FLAG = {
    "state": "ENABLED",
    "variants": {"on": True, "off": False},
    "defaultVariant": "off",
    "targeting": {"if": [{"in": ["beta", {"var": "groups"}]}, "off", "on"]},  # everyone but beta: on
}


def test_flag_errors_are_stopped_by_the_kill_switch(testenv: Cluster, namespace: str, simulator, operators) -> None:
    operators.start(namespace)
    testenv.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "flags"},
            "data": {"flags.flagd.json": json.dumps({"flags": {"new-pricing": FLAG}})},
        },
        namespace,
    )
    annotations = {
        "sim.hemostat.dev/flag-errors": "new-pricing=0.4",
        "sim.hemostat.dev/flag-source": "flags/flags.flagd.json",
    }
    testenv.apply(deployment("pricing", annotations=annotations), namespace)
    steps = [{"rollback": {}}, {"disableFlag": {"configMap": {"name": "flags", "flag": "new-pricing"}}}]
    testenv.apply(policy("pricing", steps=steps, verify_for="6s"), namespace)

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
    assert [e["reason"] for e in inc["status"]["timeline"]] == [
        "Detected",
        "MitigationSkipped",
        "FlagDisabled",
        "Recovered",
    ]
    cm = testenv.get("configmap", "flags", namespace)
    assert json.loads(cm["data"]["flags.flagd.json"])["flags"]["new-pricing"] == {
        "state": "ENABLED",
        "variants": {"on": True, "off": False},
        "defaultVariant": "off",
    }
    # what a person needs to restore it
    assert json.loads(cm["metadata"]["annotations"]["hemostat.dev/previous-flags"]) == {"new-pricing": FLAG}
    wait_for("pricing untouched", lambda: testenv.get("deployment", "pricing", namespace)["spec"]["replicas"] == 2, 5)

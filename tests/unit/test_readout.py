"""What people read (readout.py): an Incident as a timeline and as a status update, from plain dicts."""

from __future__ import annotations

from datetime import UTC, datetime

from hemostat.models.policy import Cadence
from hemostat.readout import status_update, table, timeline

NOW = datetime(2026, 12, 6, 14, 10, 0, tzinfo=UTC)


def incident(phase: str = "Monitoring", severity: str = "SEV2") -> dict:
    return {
        "metadata": {"name": "checkout-20261206-140000-ab12", "namespace": "shop"},
        "spec": {
            "severity": severity,
            "summary": "error-rate 0.31 > 0.05 at revision 7",
            "target": {"kind": "Deployment", "name": "checkout"},
            "source": "policy",
            "policyRef": {"name": "checkout"},
            "acknowledgedBy": "dana (system:serviceaccount:shop:dana)",
            "notes": [{"at": "2026-12-06T14:03:00Z", "author": "dana", "text": "looking at the payment client"}],
        },
        "status": {
            "phase": phase,
            "detectedAt": "2026-12-06T14:00:04Z",
            "startedAt": "2026-12-06T14:00:02Z",
            "revision": 7,
            "image": "shop/checkout:v7",
            "timeToMitigate": "2s",
            "evidence": [{"signal": "error-rate", "value": "0.31", "threshold": "> 0.05", "query": "q"}],
            "actions": [{"step": "rollback", "result": "Succeeded", "message": "revision 7 -> revision 6", "index": 0}],
            "timeline": [
                {"at": "2026-12-06T14:00:04Z", "type": "Warning", "reason": "Detected", "message": "error-rate 0.31"},
                {"at": "2026-12-06T14:00:06Z", "type": "Normal", "reason": "RolledBack", "message": "to revision 6"},
            ],
            **({"resolvedAt": "2026-12-06T14:05:00Z"} if phase == "Resolved" else {}),
        },
    }


def test_the_timeline_reads_in_time_since_detection_with_notes_in_place() -> None:
    text = timeline(incident())
    assert text.splitlines()[0] == "Incident shop/checkout-20261206-140000-ab12: error-rate 0.31 > 0.05 at revision 7"
    assert "  target     Deployment checkout" in text and "  source     policy (policy checkout)" in text
    body = text.split("Timeline (time since detection):\n")[1].splitlines()
    assert body == [  # warnings marked, a person's note in its place
        " !      +0s  Detected: error-rate 0.31",
        "        +2s  RolledBack: to revision 6",
        "     +2m56s  note by dana: looking at the payment client",
    ]


def test_a_status_update_follows_the_playbooks_template_and_cadence() -> None:
    text = status_update(incident(), Cadence(), NOW)
    assert text.splitlines()[:3] == [
        "Incident: error-rate 0.31 > 0.05 at revision 7 [SEV2] (checkout-20261206-140000-ab12)",
        "Status: Monitoring",
        "Time: 2026-12-06T14:10:00Z",
    ]
    assert "- Deployment checkout in namespace shop is affected" in text
    assert "- error-rate is 0.31 (threshold > 0.05)" in text
    assert "- rollback: Succeeded - revision 7 -> revision 6" in text
    assert text.endswith("- 2026-12-06T14:40:00Z (30m, the SEV2 cadence)")
    assert status_update(incident(severity="SEV1"), Cadence(), NOW).endswith("(15m, the SEV1 cadence)")
    assert "no cadence for SEV4" in status_update(incident(severity="SEV4"), Cadence(), NOW)
    final = status_update(incident("Resolved"), Cadence(), NOW)
    assert "Status: Resolved" in final and final.endswith("- none: this is the final update")


def test_a_list_reads_like_kubectl_get_with_a_namespace_column_for_all_namespaces() -> None:
    older = incident()
    older["metadata"] = {**older["metadata"], "name": "checkout-1", "creationTimestamp": "2026-12-06T13:00:00Z"}
    newer = incident("Resolved")
    newer["metadata"] = {**newer["metadata"], "name": "checkout-2", "creationTimestamp": "2026-12-06T14:00:00Z"}
    assert table([older, newer], NOW).splitlines() == [
        "NAME         SEVERITY   PHASE        TARGET                AGE",
        "checkout-2   SEV2       Resolved     Deployment/checkout   10m",
        "checkout-1   SEV2       Monitoring   Deployment/checkout   1h10m",
    ]
    wide = table([newer], NOW, wide=True, namespaces=True).splitlines()
    assert wide[0].split() == ["NAMESPACE", "NAME", "SEVERITY", "PHASE", "TARGET", "AGE", "POLICY", "SOURCE", "SUMMARY"]
    assert wide[1].startswith("shop        checkout-2") and wide[1].endswith("error-rate 0.31 > 0.05 at revision 7")
    assert table([], NOW) == "No incidents found."


def test_a_status_update_says_what_waits_for_approval() -> None:
    waiting = incident("AwaitingApproval")
    waiting["status"]["actions"] = []
    waiting["status"]["approval"] = {
        "request": 1,
        "step": {"rollback": {}},
        "action": "rollback",
        "from": "revision 7",
        "to": "revision 6",
        "deadline": "2026-12-06T14:15:00Z",
    }
    text = status_update(waiting, Cadence(), NOW)
    assert "Status: Investigating (a mitigation waits for approval)" in text
    assert "- rollback waits for approval until 2026-12-06T14:15:00Z (rollback: revision 7 -> revision 6)" in text

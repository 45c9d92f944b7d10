"""The postmortem draft says only what the Incident recorded, in the team's template."""

from datetime import UTC, datetime

from hemostat.postmortem import render

NOW = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)


def incident(**status) -> dict:
    base = {
        "phase": "Resolved",
        "startedAt": "2026-11-23T14:00:00Z",
        "detectedAt": "2026-11-23T14:00:30Z",
        "mitigatedAt": "2026-11-23T14:00:31Z",
        "resolvedAt": "2026-11-23T14:03:00Z",
        "timeToDetect": "30s",
        "timeToMitigate": "31s",
        "timeToResolve": "3m",
        "revision": 7,
        "image": "shop/checkout:v7",
        "evidence": [{"signal": "error-rate", "value": "0.23", "threshold": "> 0.05"}],
        "actions": [
            {
                "step": "rollback",
                "action": "rollback",
                "index": 0,
                "result": "Succeeded",
                "from": "revision 7 (shop/checkout:v7)",
                "to": "revision 6 (shop/checkout:v6)",
                "at": "2026-11-23T14:00:31Z",
            }
        ],
        "timeline": [
            {"at": "2026-11-23T14:00:30Z", "reason": "Detected", "message": "error-rate 0.23 > 0.05 at revision 7"},
            {"at": "2026-11-23T14:00:31Z", "reason": "RolledBack", "message": "rollback: revision 7 -> revision 6"},
            {
                "at": "2026-11-23T14:03:00Z",
                "reason": "Recovered",
                "message": "all signals healthy for 2m after rollback",
            },
        ],
    }
    base.update(status)
    return {
        "metadata": {"name": "checkout-20261123-140030", "namespace": "shop"},
        "spec": {
            "severity": "SEV2",
            "summary": "error-rate 0.23 > 0.05 at revision 7",
            "target": {"name": "checkout"},
            "policyRef": {"name": "checkout"},
            "source": "policy",
        },
        "status": base,
    }


def test_header_summary_and_timeline_are_the_recorded_facts() -> None:
    text = render(incident(), NOW)
    assert text.splitlines()[0] == "# Incident checkout-20261123-140030: error-rate 0.23 > 0.05 at revision 7"
    assert "**Duration:** 2026-11-23T14:00:00Z → 2026-11-23T14:03:00Z (3m)" in text
    assert "**Impact:** error-rate 0.23 (threshold > 0.05) at detection" in text
    assert "**Detected by:** Hemostat policy checkout after 30s" in text
    assert "Mitigated by rollback (revision 7 (shop/checkout:v7) -> revision 6 (shop/checkout:v6)) 31s after" in text
    assert "- 14:00:00 — first breaching reading" in text
    assert "- 14:00:31 — RolledBack: rollback: revision 7 -> revision 6" in text
    assert "The incident began at revision 7 of checkout (shop/checkout:v7)." in text
    for section in ("## Root cause", "## What went well", "## What went poorly", "## Where we got lucky"):
        assert section in text
    assert "| Find why revision 7 (shop/checkout:v7) raised error-rate" in text


def test_an_open_escalated_incident_says_so_and_suggests_a_step() -> None:
    text = render(
        incident(
            phase="Escalated",
            resolvedAt=None,
            escalatedAt="2026-11-23T14:05:00Z",
            actions=[
                {
                    "step": "rollback",
                    "index": 0,
                    "result": "Skipped",
                    "at": "2026-11-23T14:00:31Z",
                    "message": "no revision older than 1 is left to roll back to",
                }
            ],
        ),
        NOW,
    )
    assert "(1h0m so far)" in text or "still open" in text
    assert "it was escalated to people" in text
    assert "| Make the rollback step usable for this service next time: no revision older than 1" in text
    assert "| Add a mitigation step that would have stopped this without a person |" in text


def test_trigger_shows_what_changed_in_the_pod_template() -> None:
    from hemostat.postmortem import template_diff

    bad = {
        "metadata": {"labels": {"app": "c", "pod-template-hash": "abc"}, "annotations": {"err": "0.3"}},
        "spec": {"containers": [{"name": "app", "image": "shop/checkout:v7"}]},
    }
    good = {
        "metadata": {"labels": {"app": "c"}, "annotations": {"err": "0"}},
        "spec": {"containers": [{"name": "app", "image": "shop/checkout:v6"}]},
    }
    diff = template_diff(bad, good)
    assert "-  - image: shop/checkout:v7" in diff and "+  - image: shop/checkout:v6" in diff
    assert "pod-template-hash" not in diff
    text = render(incident(), NOW, diff)
    assert "```diff" in text and "+  - image: shop/checkout:v6" in text
    assert "nothing was rolled back" in render(incident(), NOW, "")


def test_the_attributed_cause_and_its_evidence_are_in_the_draft() -> None:
    attribution = {
        "verdict": "global",
        "confidence": 0.85,
        "mode": "enforce",
        "reason": "error-rate: 3 of 3 untouched peers breach too",
        "at": "2026-11-23T14:00:30Z",
        "evidence": [
            {"kind": "fleet", "says": "global", "detail": "error-rate: 3 of 3 untouched peers breach too"},
            {"kind": "timing", "says": "deploy", "detail": "the breach began 4m after revision 7 became current"},
        ],
    }
    text = render(incident(attribution=attribution, actions=[]), NOW)
    assert "Verdict **global**, confidence 0.85, at 2026-11-23T14:00:30Z: error-rate: 3 of 3" in text
    assert "| fleet | global | error-rate: 3 of 3 untouched peers breach too |" in text
    assert "Confirm the cause Hemostat attributed (global)" in text
    assert "Find why revision 7" not in text, "the deploy is not named the trigger when the evidence blames elsewhere"
    assert "Not attributed" in render(incident(), NOW)


def test_a_reconciler_paused_for_the_rollback_makes_reverting_git_the_first_action_item() -> None:
    paused = {
        "reconciler": "Flux Kustomization flux-system/shop",
        "object": "Deployment checkout",
        "how": "annotation kustomize.toolkit.fluxcd.io/reconcile: disabled on Deployment checkout",
        "at": "2026-11-23T14:00:31Z",
        "resume": "revert the bad change in Git, then: hemostat incident resolve checkout-1 --resume-gitops",
    }
    items = render(incident(gitops=[paused]), NOW).split("## Action items", 1)[1].splitlines()
    first = next(line for line in items if line.startswith("| ") and "Item" not in line and "---" not in line)
    assert "Revert the bad change in Git (revision 7 (shop/checkout:v7))" in first, first
    assert "resume Flux Kustomization flux-system/shop" in first and "--resume-gitops" in first
    assert "Revert the bad change in Git" not in render(incident(), NOW), "no pause, no such item"

"""Nobody acts through the operator beyond their own rights: the chart's admission policies on
the real API server, with tokens of real, restricted ServiceAccounts (never the admin certificate).
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import yaml
from chart import token_kubeconfig
from conftest import Cluster, wait_for
from kubernetes import client, config
from scenarios import app, deployment_state, hemostat, policy, rollout, wait_ready

INCIDENTS = {"apiGroups": ["hemostat.dev"], "resources": ["incidents"], "verbs": ["get", "list", "create", "patch"]}
PATCH_DEPLOYMENTS = {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "patch"]}


def account(testenv: Cluster, ns: str, name: str, rules: list[dict], tmp_path: Path) -> Path:
    """A ServiceAccount with exactly these rules in `ns`, and a kubeconfig that acts as it."""
    testenv.kubectl("create", "serviceaccount", name, "-n", ns)
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": name}, "rules": rules}
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ns}],
    }
    testenv.apply(role, ns)
    testenv.apply(binding, ns)
    return token_kubeconfig(testenv, name, ns, ns, tmp_path / f"{name}.kubeconfig")


def named(group: str, resource: str, name: str) -> dict:
    """Patch on one object only (RBAC resourceNames)."""
    return {"apiGroups": [group], "resources": [resource], "resourceNames": [name], "verbs": ["get", "patch"]}


def timeline(testenv: Cluster, ns: str, name: str) -> str:
    status = testenv.get("incident", name, ns).get("status") or {}
    return "\n".join(e["message"] for e in status.get("timeline", []))


def incident(name: str, target: str, mitigation: dict | None = None, **extra: object) -> dict:
    spec = {"severity": "SEV2", "summary": "support reports errors", "target": {"name": target}, "source": "manual"}
    if mitigation is not None:
        spec["mitigation"] = mitigation
    spec.update(extra.pop("spec", {}))  # type: ignore[arg-type]
    return {
        "apiVersion": "hemostat.dev/v1alpha1",
        "kind": "Incident",
        "metadata": {"name": name, **extra},
        "spec": spec,
    }


def create_as(testenv: Cluster, kubeconfig: Path, ns: str, obj: dict, *flags: str) -> subprocess.CompletedProcess:
    cmd = ["create", "-f", "-", "-n", ns, "--kubeconfig", str(kubeconfig), *flags]
    return testenv.kubectl(*cmd, input=json.dumps(obj), check=False)


def enforced(testenv: Cluster, kubeconfig: Path, ns: str) -> bool:
    """New admission policies take a moment to apply; ask with a dry run that one would refuse."""
    probe = incident("probe", "x", spec={"source": "policy"})
    return create_as(testenv, kubeconfig, ns, probe, "--dry-run=server").returncode != 0


def test_a_mitigation_request_needs_the_requesters_own_right_to_patch(
    testenv: Cluster, namespace: str, installed, operators, tmp_path: Path
) -> None:
    release, system = installed
    bystander = account(testenv, namespace, "bystander", [INCIDENTS], tmp_path)
    responder = account(testenv, namespace, "responder", [INCIDENTS, PATCH_DEPLOYMENTS], tmp_path)
    wait_for("the admission policies enforced", lambda: enforced(testenv, bystander, namespace), 30)
    # the operator as the chart runs it: its ServiceAccount's token and the chart's RBAC
    operator = token_kubeconfig(testenv, f"{release}-hemostat", system, namespace, tmp_path / "op.kubeconfig")
    operators.start(namespace, env={"KUBECONFIG": str(operator)})
    testenv.apply(app("shopfront", "registry.local/shopfront:v1"), namespace)
    wait_ready(testenv, namespace, "shopfront")
    rollout(testenv, namespace, "shopfront", "registry.local/shopfront:v2", error_rate=0.0)
    wait_ready(testenv, namespace, "shopfront")

    refused = create_as(testenv, bystander, namespace, incident("ask-1", "shopfront", {"rollback": {}}))
    assert refused.returncode != 0
    assert (
        "hemostat-incident-requests: spec.mitigation.rollback needs permission to patch deployments/shopfront "
        f"in namespace {namespace}, which system:serviceaccount:{namespace}:bystander does not have"
    ) in refused.stderr
    # nothing happened: no Incident, no rollback
    assert testenv.kubectl("get", "incident", "ask-1", "-n", namespace, check=False).returncode != 0
    # the right asked for is the target's own: patching Deployments does not let one abort a Rollout
    argo = incident("ask-7", "shopfront", {"rollback": {}})
    argo["spec"]["target"]["kind"] = "Rollout"
    refused_argo = create_as(testenv, responder, namespace, argo)
    assert (
        "spec.mitigation.rollback needs permission to patch rollouts.argoproj.io/shopfront "
        f"in namespace {namespace}, which system:serviceaccount:{namespace}:responder does not have"
    ) in refused_argo.stderr
    # declaring an incident without asking for an action stays open to them
    assert create_as(testenv, bystander, namespace, incident("declared", "shopfront")).returncode == 0
    # nor can they add the request to it afterwards
    patch = ["patch", "incident", "declared", "-n", namespace, "--type=merge", "--kubeconfig", str(bystander)]
    added = testenv.kubectl(
        *patch, "-p", json.dumps({"spec": {"mitigation": {"scaleUp": {"maxReplicas": 50}}}}), check=False
    )
    assert added.returncode != 0 and "spec.mitigation.scaleUp needs permission to patch deployments/shopfront" in (
        added.stderr
    )
    flag = {"disableFlag": {"configMap": {"name": "flags", "flag": "new-pricing"}}}
    refused_flag = create_as(testenv, responder, namespace, incident("ask-2", "shopfront", flag))
    assert "spec.mitigation.disableFlag needs permission to patch configmaps/flags" in refused_flag.stderr
    # scaleUp may raise the minReplicas of an HPA, whichever targets the Deployment
    scale = create_as(testenv, responder, namespace, incident("ask-4", "shopfront", {"scaleUp": {"maxReplicas": 4}}))
    assert (
        f"spec.mitigation.scaleUp needs permission to patch horizontalpodautoscalers in namespace {namespace} "
        "(it raises the minReplicas of any HPA that targets deployments/shopfront), "
        f"which system:serviceaccount:{namespace}:responder does not have"
    ) in scale.stderr
    # a flag's keeper asks for the kill switch, but it would spend the Deployment's shared cooldown
    keeper = account(testenv, namespace, "keeper", [INCIDENTS, named("", "configmaps", "flags")], tmp_path)
    kill = create_as(testenv, keeper, namespace, incident("ask-5", "shopfront", flag))
    assert (
        f"spec.mitigation.disableFlag needs permission to patch deployments/shopfront in namespace {namespace} "
        "(the action is recorded in its ledger"
    ) in kill.stderr
    # a request admitted for one Deployment cannot be re-pointed at another while it waits
    narrow = account(testenv, namespace, "narrow", [INCIDENTS, named("apps", "deployments", "decoy")], tmp_path)
    assert create_as(testenv, narrow, namespace, incident("ask-6", "decoy", {"rollback": {}})).returncode == 0
    held = "requested rollback held: Deployment decoy does not exist"
    wait_for("the request held", lambda: held in timeline(testenv, namespace, "ask-6"))
    repoint = ["patch", "incident", "ask-6", "-n", namespace, "--type=merge", "--kubeconfig", str(narrow)]
    moved = testenv.kubectl(*repoint, "-p", '{"spec":{"target":{"name":"shopfront"}}}', check=False)
    assert moved.returncode != 0
    assert (
        "spec.mitigation.rollback needs permission to patch deployments/shopfront "
        f"in namespace {namespace}, which system:serviceaccount:{namespace}:narrow does not have"
    ) in moved.stderr
    assert deployment_state(testenv, namespace, "shopfront") == ("2", "registry.local/shopfront:v2")

    # the responder may patch the Deployment: the operator carries the request out
    assert create_as(testenv, responder, namespace, incident("ask-3", "shopfront", {"rollback": {}})).returncode == 0
    wait_for(
        "the rollback",
        lambda: deployment_state(testenv, namespace, "shopfront") == ("3", "registry.local/shopfront:v1"),
        60,
    )
    parked = testenv.get("incident", "ask-6", namespace)  # still held, still aimed at decoy, never carried out
    assert parked["spec"]["target"]["name"] == "decoy" and not parked["status"].get("actions")


def test_only_the_operator_writes_what_ties_an_incident_to_a_policy(
    testenv: Cluster, namespace: str, installed, tmp_path: Path
) -> None:
    release, system = installed
    # RBAC even lets this person write Incident status: the admission policy is what refuses it
    status_rights = {"apiGroups": ["hemostat.dev"], "resources": ["incidents/status"], "verbs": ["get", "patch"]}
    person = account(testenv, namespace, "person", [INCIDENTS, PATCH_DEPLOYMENTS, status_rights], tmp_path)
    wait_for("the admission policies enforced", lambda: enforced(testenv, person, namespace), 30)

    refusals = {
        "source: policy": (
            incident("forged-1", "shopfront", spec={"source": "policy"}),
            "only the Hemostat operator opens source: policy Incidents",
        ),
        "policy label": (
            incident("forged-2", "shopfront", labels={"hemostat.dev/policy": "checkout"}),
            "the labels hemostat.dev/policy and hemostat.dev/target are set by the Hemostat operator only",
        ),
        "detection annotation": (
            incident("forged-3", "shopfront", annotations={"hemostat.dev/detection": '{"phase":"Escalated"}'}),
            "the annotation hemostat.dev/detection is set by the Hemostat operator only",
        ),
        "policyRef": (
            incident("forged-4", "shopfront", spec={"policyRef": {"name": "checkout"}}),
            "spec.policyRef is set by the Hemostat operator only",
        ),
    }
    for what, (obj, message) in refusals.items():
        proc = create_as(testenv, person, namespace, obj)
        assert proc.returncode != 0 and f"hemostat-incident-fields: {message}" in proc.stderr, (what, proc.stderr)

    # nor later, on an Incident they may otherwise edit (ack, notes, resolve)
    assert create_as(testenv, person, namespace, incident("mine", "shopfront")).returncode == 0
    patch = ["patch", "incident", "mine", "-n", namespace, "--type=merge", "--kubeconfig", str(person)]
    assert testenv.kubectl(*patch, "-p", '{"spec":{"acknowledgedBy":"dana"}}').returncode == 0
    label = testenv.kubectl(*patch, "-p", '{"metadata":{"labels":{"hemostat.dev/target":"shopfront"}}}', check=False)
    assert "hemostat-incident-fields: the labels hemostat.dev/policy and hemostat.dev/target" in label.stderr
    status = testenv.kubectl(*patch, "--subresource=status", "-p", '{"status":{"phase":"Resolved"}}', check=False)
    assert "hemostat-incident-fields: only the Hemostat operator writes Incident status" in status.stderr

    # nor may a cluster admin: admission policies do not exempt system:masters
    admin = testenv.kubectl(
        "create", "-f", "-", "-n", namespace, input=json.dumps(refusals["source: policy"][0]), check=False
    )
    assert "only the Hemostat operator opens source: policy Incidents" in admin.stderr

    # the operator's own ServiceAccount may (dry run: nothing is left behind)
    operator = token_kubeconfig(testenv, f"{release}-hemostat", system, namespace, tmp_path / "op.kubeconfig")
    for obj, _ in refusals.values():
        proc = create_as(testenv, operator, namespace, obj, "--dry-run=server")
        assert proc.returncode == 0, proc.stderr

    # an Incident the operator opened for a policy, as it opens them
    opened = incident(
        "opened",
        "shopfront",
        labels={"hemostat.dev/policy": "checkout", "hemostat.dev/target": "shopfront"},
        spec={"source": "policy", "policyRef": {"name": "checkout"}},
    )
    assert create_as(testenv, operator, namespace, opened).returncode == 0
    patch_status(operator, namespace, "opened", {"status": {"phase": "Detected"}})  # its RBAC: patch, no get
    # people may acknowledge and resolve it, but not re-point it or take it from its policy
    patch = ["patch", "incident", "opened", "-n", namespace, "--type=merge", "--kubeconfig", str(person)]
    assert testenv.kubectl(*patch, "-p", '{"spec":{"acknowledgedBy":"dana","resolve":true}}').returncode == 0
    edits = {
        '{"spec":{"target":{"name":"checkout-db"}}}': "the target of a policy's Incident is set by the Hemostat",
        '{"spec":{"policyRef":{"name":"search"}}}': "spec.policyRef is set by the Hemostat operator only",
        '{"spec":{"source":"manual"}}': "nobody changes spec.source",
        '{"metadata":{"labels":{"hemostat.dev/policy":null}}}': "the labels hemostat.dev/policy and",
        '{"metadata":{"annotations":{"hemostat.dev/detection":"{}"}}}': "the annotation hemostat.dev/detection",
    }
    for body, message in edits.items():
        proc = testenv.kubectl(*patch, "-p", body, check=False)
        assert proc.returncode != 0 and message in proc.stderr, (body, proc.stderr)
        assert f"refused for system:serviceaccount:{namespace}:person" in proc.stderr
    kept = testenv.get("incident", "opened", namespace)
    assert kept["spec"]["target"]["name"] == "shopfront" and kept["spec"]["policyRef"] == {"name": "checkout"}
    assert kept["metadata"]["labels"]["hemostat.dev/policy"] == "checkout"
    assert kept["status"]["phase"] == "Detected"


ROLE_RIGHTS = {
    # (role, verb, resource): allowed
    ("view", "list", "incidents"): True,
    ("view", "get", "mitigationpolicies"): True,
    ("view", "create", "incidents"): False,
    ("view", "patch", "incidents"): False,
    ("responder", "list", "mitigationpolicies"): True,
    ("responder", "watch", "incidents"): True,
    ("responder", "create", "incidents"): True,
    ("responder", "patch", "incidents"): True,
    ("responder", "delete", "incidents"): False,
    ("responder", "patch", "incidents/status"): False,
    ("responder", "create", "mitigationpolicies"): False,
    ("admin", "get", "incidents"): True,
    ("admin", "create", "incidents"): True,
    ("admin", "create", "mitigationpolicies"): True,
    ("admin", "delete", "mitigationpolicies"): True,
    ("admin", "delete", "incidents"): True,
    ("admin", "patch", "incidents/status"): False,
    ("admin", "patch", "mitigationpolicies/status"): False,
}


def test_hemostat_roles_bound_on_their_own_grant_what_they_say(
    testenv: Cluster, namespace: str, installed, tmp_path: Path
) -> None:
    """Each role is complete (responder includes view, admin includes responder), so it can be bound
    directly; the built-in view / edit / admin get them by aggregation (test_chart.py)."""
    release, _ = installed
    for role in ("view", "responder", "admin"):
        testenv.kubectl("create", "serviceaccount", f"{role}-person", "-n", namespace)
        testenv.kubectl(
            "create",
            "rolebinding",
            f"{role}-person",
            f"--clusterrole={release}-hemostat-{role}",
            f"--serviceaccount={namespace}:{role}-person",
            "-n",
            namespace,
        )

    def can(role: str, verb: str, resource: str) -> bool:
        resource, _, sub = resource.partition("/")
        user = f"--as=system:serviceaccount:{namespace}:{role}-person"
        args = ["auth", "can-i", verb, f"{resource}.hemostat.dev", "-n", namespace, user, f"--subresource={sub}"]
        return testenv.kubectl(*args, check=False).stdout.strip() == "yes"

    assert {k: can(*k) for k in ROLE_RIGHTS} == ROLE_RIGHTS
    # and the responder's rights are enough for the hemostat command, on a policy's Incident
    operator = token_kubeconfig(testenv, f"{release}-hemostat", installed[1], namespace, tmp_path / "op.kubeconfig")
    opened = incident(
        "opened",
        "shopfront",
        labels={"hemostat.dev/policy": "checkout", "hemostat.dev/target": "shopfront"},
        spec={"source": "policy", "policyRef": {"name": "checkout"}},
    )
    assert create_as(testenv, operator, namespace, opened).returncode == 0
    responder = token_kubeconfig(testenv, "responder-person", namespace, namespace, tmp_path / "responder.kubeconfig")
    viewer = token_kubeconfig(testenv, "view-person", namespace, namespace, tmp_path / "view.kubeconfig")
    for who, args in (
        (responder, ["ack", "opened", "--commander", "dana"]),
        (responder, ["note", "opened", "paged the payments team"]),
        (responder, ["resolve", "opened"]),
    ):
        proc = hemostat(testenv, "incident", *args, "-n", namespace, "--kubeconfig", str(who))
        assert proc.returncode == 0, proc.stderr
    refused = hemostat(testenv, "incident", "ack", "opened", "-n", namespace, "--kubeconfig", str(viewer))
    assert refused.returncode != 0
    spec = testenv.get("incident", "opened", namespace)["spec"]
    assert spec["commander"] == "dana" and spec["resolve"] is True
    assert [n["text"] for n in spec["notes"]][:1] == ["paged the payments team"]


def patch_status(kubeconfig: Path, ns: str, name: str, body: dict) -> None:
    api = client.CustomObjectsApi(config.new_client_from_config(str(kubeconfig)))
    api.patch_namespaced_custom_object_status("hemostat.dev", "v1alpha1", ns, "incidents", name, body)


def test_a_step_without_admission_rules_is_refused(
    testenv: Cluster, crds: None, namespace: str, tmp_path: Path
) -> None:
    # The chart's incident-requests policy as it would be generated from a registry that lacks the rules of
    # one step (disableFlag): a request for that step is refused, not let through.
    from chart import CHART, helm
    from container import kube_version

    from hemostat.actions.steps import STEPS
    from hemostat.crdgen import step_rules

    rendered = helm(
        testenv,
        "template",
        "hs",
        str(CHART),
        "--show-only",
        "templates/admission-incidents.yaml",
        "--kube-version",
        kube_version(),
        "--set",
        f"watchNamespaces={{{namespace}}}",
    ).stdout
    docs = [d for d in yaml.safe_load_all(rendered) if d and d["metadata"]["name"] == "hs-hemostat-incident-requests"]
    policy, binding = sorted(docs, key=lambda d: d["kind"])
    name = f"no-flag-rules-{namespace}"
    policy["metadata"]["name"] = binding["metadata"]["name"] = binding["spec"]["policyName"] = name
    policy["spec"]["validations"] = step_rules({k: v for k, v in STEPS.items() if k != "disableFlag"})
    testenv.apply(policy)
    testenv.apply(binding)
    try:
        everything = [
            {"apiGroups": ["hemostat.dev"], "resources": ["incidents"], "verbs": ["create"]},
            {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["patch"]},
            {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["patch"]},
        ]
        responder = account(testenv, namespace, "responder", everything, tmp_path)
        flag = incident("flag", "web", {"disableFlag": {"configMap": {"name": "flags", "flag": "x"}}})

        def refused() -> subprocess.CompletedProcess | None:
            out = create_as(testenv, responder, namespace, flag, "--dry-run=server")
            return out if out.returncode != 0 else None

        out = wait_for("the policy enforced", refused, 30)
        assert "spec.mitigation asks for a step that has no admission rule" in out.stderr, out.stderr
        rollback = incident("back", "web", {"rollback": {}})
        assert create_as(testenv, responder, namespace, rollback, "--dry-run=server").returncode == 0
    finally:
        testenv.kubectl("delete", "validatingadmissionpolicybinding,validatingadmissionpolicy", name, check=False)


POLICIES = {"apiGroups": ["hemostat.dev"], "resources": ["mitigationpolicies"], "verbs": ["get", "create", "patch"]}
PATCH_HPAS = {"apiGroups": ["autoscaling"], "resources": ["horizontalpodautoscalers"], "verbs": ["patch"]}


def test_a_policy_is_a_standing_request_its_writer_needs_the_rights_for(
    testenv: Cluster, namespace: str, installed, tmp_path: Path
) -> None:
    """A policy's steps run with the operator's rights whenever it breaches: writing one needs what asking
    for each step would (on any target its selector picks), `get` on the Secrets its webhooks read, and
    stays under the chart's scale-up caps."""
    author = account(testenv, namespace, "author", [POLICIES], tmp_path)
    owner = account(testenv, namespace, "owner", [POLICIES, PATCH_DEPLOYMENTS], tmp_path)
    scaler = account(testenv, namespace, "scaler", [POLICIES, PATCH_DEPLOYMENTS, PATCH_HPAS], tmp_path)
    probe = policy("probe")
    wait_for(
        "the admission policies enforced",
        lambda: create_as(testenv, author, namespace, probe, "--dry-run=server").returncode != 0,
        30,
    )

    def refusal(kubeconfig: Path, steps: list[dict], **spec: object) -> str:
        p = policy("shop", steps=steps)
        p["spec"].update(spec)
        out = create_as(testenv, kubeconfig, namespace, p, "--dry-run=server")
        return out.stderr if out.returncode != 0 else ""

    who = f"system:serviceaccount:{namespace}"
    assert (
        "hemostat-policy-requests: spec.mitigation.steps[].rollback needs permission to patch deployments/* "
        f"in namespace {namespace}, which {who}:author does not have"
    ) in refusal(author, [{"rollback": {}}])
    assert refusal(owner, [{"rollback": {}}]) == ""  # their own Deployments: theirs to roll back
    assert (
        f"spec.mitigation.steps[].scaleUp needs permission to patch horizontalpodautoscalers in namespace {namespace}"
    ) in refusal(owner, [{"rollback": {}}, {"scaleUp": {"factor": 2, "maxReplicas": 20}}])
    flag = {"disableFlag": {"configMap": {"name": "flags", "flag": "new-pricing"}}}
    assert "spec.mitigation.steps[].disableFlag needs permission to patch configmaps/flags" in refusal(owner, [flag])
    hook = {"webhooks": [{"secretRef": {"name": "pager", "key": "url"}}]}
    assert (
        f"spec.notify needs permission to get secrets/pager in namespace {namespace} "
        f"(the operator reads the URLs and keys of its webhooks and pages from them), which {who}:owner does not have"
    ) in refusal(owner, [{"rollback": {}}], notify=hook)
    # a page's routing key is read for them too: naming a Secret they cannot read would send it out
    receiver = {"secretRef": {"name": "mine", "key": "url"}, "routingKeyRef": {"name": "db-password", "key": "pw"}}
    pages = {"pages": {"levels": [{"receiver": receiver}]}}
    assert "spec.notify needs permission to get secrets/mine, secrets/db-password" in refusal(
        owner, [{"rollback": {}}], notify=pages
    )
    assert refusal(scaler, [{"scaleUp": {"factor": 2, "maxReplicas": 20}}]) == ""
    assert "scaleUp is capped at maxReplicas 50 and factor 4 on this cluster" in refusal(
        scaler, [{"scaleUp": {"factor": 2, "maxReplicas": 500}}]
    )
    # floors, so a flapping signal cannot churn Incidents (the fixture's: the chart's defaults are 30s, 1m, 10m)
    rollback = [{"rollback": {}}]
    floors = (
        ({"mitigation": {"steps": rollback, "verifyFor": "2s"}}, "spec.mitigation.verifyFor", "3s"),
        ({"guardrails": {"cooldown": "0s"}}, "spec.guardrails.cooldown", "1s"),
        ({"reopenWithin": "30s"}, "spec.reopenWithin", "1m"),
    )
    for spec, field, floor in floors:
        assert (
            f"hemostat-policy-requests: {field} must be at least {floor} on this cluster (chart values policyLimits): "
            f"shorter lets a flapping signal open and resolve Incidents every few seconds; refused for {who}:owner"
        ) in refusal(owner, rollback, **spec), field

    # what the policy asks for is checked whenever it changes, never for changes that ask nothing new
    testenv.apply(policy("shop"), namespace)
    label = ["label", "mitigationpolicy", "shop", "team=checkout", "-n", namespace, "--kubeconfig", str(author)]
    assert testenv.kubectl(*label, check=False).returncode == 0
    grow = json.dumps({"spec": {"mitigation": {"steps": [{"scaleUp": {"factor": 2, "maxReplicas": 20}}]}}})
    patch = ["patch", "mitigationpolicy", "shop", "-n", namespace, "--type=merge", "-p", grow]
    changed = testenv.kubectl(*patch, "--kubeconfig", str(author), check=False)
    assert changed.returncode != 0 and "hemostat-policy-requests" in changed.stderr
    # and a floor holds on an update too, for whoever writes it
    quick = ["patch", "mitigationpolicy", "shop", "-n", namespace, "--type=merge"]
    lowered = testenv.kubectl(*quick, "-p", '{"spec":{"reopenWithin":"0s"}}', check=False)
    assert lowered.returncode != 0 and "spec.reopenWithin must be at least 1m" in lowered.stderr


def test_only_the_operator_writes_its_record_on_the_objects_it_acts_on(
    testenv: Cluster, namespace: str, installed, tmp_path: Path
) -> None:
    """The ledger and markers live on the Deployment, which its editors may patch: a forged ledger
    entry, a forged marker or an emptied ledger would spend or reset the guardrails of every policy."""
    release, system = installed
    rules = [PATCH_DEPLOYMENTS, {"apiGroups": ["apps"], "resources": ["replicasets"], "verbs": ["get", "list"]}]
    editor = account(testenv, namespace, "editor", rules, tmp_path)
    operator = token_kubeconfig(testenv, f"{release}-hemostat", system, namespace, tmp_path / "op.kubeconfig")
    testenv.apply(app("shopfront", "registry.local/shopfront:v1"), namespace)
    wait_ready(testenv, namespace, "shopfront")

    def annotate(kubeconfig: Path, *pairs: str) -> subprocess.CompletedProcess:
        args = ["annotate", "deployment", "shopfront", "--overwrite", "-n", namespace, "--kubeconfig", str(kubeconfig)]
        return testenv.kubectl(*args, *pairs, check=False)

    first = '[{"at":"2026-12-06T10:00:00Z","by":"shop/checkout-1","action":"rollback"}]'
    # a probe that writes nothing: one admitted before the policy is enforced must not make the next a no-op
    probe = ("hemostat.dev/actions=[]", "--dry-run=server")
    wait_for("the admission policy enforced", lambda: annotate(editor, *probe).returncode != 0, 30)
    assert annotate(operator, f"hemostat.dev/actions={first}").returncode == 0  # the operator writes its ledger
    forged = '[{"at":"2099-01-01T00:00:00Z","by":"me","action":"rollback"}]'
    for pair in (
        f"hemostat.dev/actions={forged}",  # holds every action as a cooldown
        "hemostat.dev/actions=garbage",  # resets cooldown and budget
        "hemostat.dev/actions-",  # the same, by removal
        'hemostat.dev/mitigation={"incident":"x","step":0,"action":"rollback","from":"a","to":"b","at":"now"}',
    ):
        refused = annotate(editor, pair)
        assert refused.returncode != 0, pair
        key = pair.split("=")[0].rstrip("-")
        assert f"hemostat-workload-state: the annotation {key} is the Hemostat operator's record" in refused.stderr
        assert f"refused for system:serviceaccount:{namespace}:editor" in refused.stderr
    annotations = testenv.get("deployment", "shopfront", namespace)["metadata"]["annotations"]
    assert annotations["hemostat.dev/actions"] == first and "hemostat.dev/mitigation" not in annotations
    # their own switch stays theirs
    assert annotate(editor, "hemostat.dev/paused=true").returncode == 0

    # a rollout and `kubectl rollout undo` carry a ReplicaSet's older copy of the ledger along: allowed
    rollout(testenv, namespace, "shopfront", "registry.local/shopfront:v2", error_rate=0.0)
    wait_ready(testenv, namespace, "shopfront")
    second = first[:-1] + ',{"at":"2026-12-06T10:05:00Z","by":"shop/checkout-2","action":"scaleUp"}]'
    assert annotate(operator, f"hemostat.dev/actions={second}").returncode == 0
    undo = ["rollout", "undo", "deployment/shopfront", "-n", namespace, "--kubeconfig", str(editor)]
    done = testenv.kubectl(*undo, check=False)
    assert done.returncode == 0, done.stderr
    assert deployment_state(testenv, namespace, "shopfront")[1] == "registry.local/shopfront:v1"


def test_without_its_admission_policies_the_operator_refuses_requests_and_says_why(
    testenv: Cluster, namespace: str, installed, operators, tmp_path: Path
) -> None:
    """A request the API server admitted while the policy that authorizes requests was not bound was never
    checked: the operator refuses it (fail closed), then or later, and says which policy is missing."""
    release, system = installed
    fullname = f"{release}-hemostat"
    bystander = account(testenv, namespace, "bystander", [INCIDENTS], tmp_path)
    responder = account(testenv, namespace, "responder", [INCIDENTS, PATCH_DEPLOYMENTS], tmp_path)
    wait_for("the admission policies enforced", lambda: enforced(testenv, bystander, namespace), 30)
    operator = token_kubeconfig(testenv, fullname, system, namespace, tmp_path / "op.kubeconfig")
    proc = operators.start(namespace, f"--admission-policies={fullname}", env={"KUBECONFIG": str(operator)})
    testenv.apply(app("shopfront", "registry.local/shopfront:v1"), namespace)
    wait_ready(testenv, namespace, "shopfront")
    rollout(testenv, namespace, "shopfront", "registry.local/shopfront:v2", error_rate=0.0)
    wait_ready(testenv, namespace, "shopfront")

    binding = f"{fullname}-incident-requests"
    saved = testenv.get("validatingadmissionpolicybinding", binding)
    testenv.kubectl("delete", "validatingadmissionpolicybinding", binding)
    ask = incident("ask-1", "shopfront", {"rollback": {}})
    wait_for(  # the API server stops checking a moment after the binding goes
        "the request admitted unchecked",
        lambda: create_as(testenv, bystander, namespace, ask, "--dry-run=server").returncode == 0,
        30,
    )
    assert create_as(testenv, bystander, namespace, ask).returncode == 0
    refused = (
        f"requested rollback refused: ValidatingAdmissionPolicyBinding {binding} does not exist, so nobody "
        "checked that the requester may make this change; nothing was done"
    )
    wait_for("the refusal", lambda: refused in timeline(testenv, namespace, "ask-1"), 30)
    conditions = {x["type"]: x for x in testenv.get("incident", "ask-1", namespace)["status"]["conditions"]}
    assert conditions["Authorized"]["status"] == "False"
    assert conditions["Authorized"]["reason"] == "AdmissionPolicyMissing"

    # bound again, the old request stays refused (it was admitted unchecked); a new one is carried out
    saved["metadata"] = {"name": binding, "labels": saved["metadata"].get("labels", {})}
    testenv.apply(saved)
    wait_for("the admission policies enforced again", lambda: enforced(testenv, bystander, namespace), 30)
    bound_at = testenv.get("validatingadmissionpolicybinding", binding)["metadata"]["creationTimestamp"]
    # a request in the binding's own second may have come before it applied: it would be refused too
    wait_for("a second after the binding", lambda: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()) > bound_at, 5)
    assert create_as(testenv, responder, namespace, incident("ask-2", "shopfront", {"rollback": {}})).returncode == 0
    wait_for(
        "the rollback",
        lambda: deployment_state(testenv, namespace, "shopfront") == ("3", "registry.local/shopfront:v1"),
        60,
    )
    since = f"{binding} is in force only since"
    wait_for("the old request refused again", lambda: since in timeline(testenv, namespace, "ask-1"), 30)
    assert "after the request was written" in timeline(testenv, namespace, "ask-1")
    assert not testenv.get("incident", "ask-1", namespace)["status"].get("actions")
    assert "Forbidden" not in proc.log(400)  # the chart's RBAC lets it read the policies it checks

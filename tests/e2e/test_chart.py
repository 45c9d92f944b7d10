"""The Helm chart: invariants, drift, and the operator working with exactly the chart's RBAC.

Pods run no containers here (kwok), so the operator runs on this machine with the
identity of the chart's ServiceAccount: a token minted for it, nothing more.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
import yaml
from chart import CHART, helm, token_kubeconfig
from conftest import ROOT, Cluster, wait_for
from container import kube_version
from processes import free_port, prom_query, prom_value
from scenarios import app, deployment_state, policy, rollout, target_verdict, wait_phase, wait_ready

from hemostat.outbound import load_destinations

KUBE_VERSION = kube_version()


def render(testenv: Cluster, *sets: str) -> list[dict]:
    args = ["template", "hemostat", str(CHART), "-n", "hemostat-system", "--kube-version", KUBE_VERSION]
    for s in sets:
        args += ["--set", s]
    return [d for d in yaml.safe_load_all(helm(testenv, *args).stdout) if d]


def test_gitops_reconcilers_are_granted_only_when_enabled(testenv: Cluster) -> None:
    def grants(docs: list[dict], kind: str, name: str) -> dict[tuple[str, str], set[str]]:
        (role,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
        return {(g, r): set(x["verbs"]) for x in role["rules"] for g in x["apiGroups"] for r in x["resources"]}

    everywhere = grants(
        render(testenv, "gitops.fluxHelmReleases=true", "gitops.argoCDApplications=true"), "ClusterRole", "hemostat"
    )
    assert everywhere[("helm.toolkit.fluxcd.io", "helmreleases")] == {"get", "patch"}
    assert everywhere[("argoproj.io", "applications")] == {"get", "patch"}
    off = grants(render(testenv), "ClusterRole", "hemostat")
    assert not {g for g, _ in off} & {"helm.toolkit.fluxcd.io", "argoproj.io"}

    docs = render(testenv, "watchNamespaces={shop}", "gitops.argoCDApplications=true", "gitops.argoCDNamespaces={argo}")
    (argo,) = [d for d in docs if d["kind"] == "Role" and d["metadata"]["name"] == "hemostat-argocd"]
    assert argo["metadata"]["namespace"] == "argo" and grants(docs, "Role", "hemostat-argocd") == {
        ("argoproj.io", "applications"): {"get", "patch"}
    }
    shop = [d for d in docs if d["kind"] == "Role" and d["metadata"]["name"] == "hemostat"]
    assert all(r["apiGroups"] != ["argoproj.io"] for d in shop for r in d["rules"]), "only where Applications live"


def test_argo_rollouts_are_watched_and_granted_only_when_enabled(testenv: Cluster) -> None:
    def grants(docs: list[dict]) -> dict[tuple[str, str], set[str]]:
        (role,) = [d for d in docs if d["kind"] == "ClusterRole" and d["metadata"]["name"] == "hemostat"]
        return {(g, r): set(x["verbs"]) for x in role["rules"] for g in x["apiGroups"] for r in x["resources"]}

    def args(docs: list[dict]) -> list[str]:
        (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
        return deployment["spec"]["template"]["spec"]["containers"][0]["args"]

    on = render(testenv, "argoRollouts.enabled=true")
    assert grants(on)[("argoproj.io", "rollouts")] == {"get", "list", "watch", "patch"}
    assert grants(on)[("argoproj.io", "rollouts/status")] == {"patch"}  # the abort, nothing else in status
    assert "--argo-rollouts" in args(on)
    off = render(testenv)
    assert not {g for g, _ in grants(off)} & {"argoproj.io"} and "--argo-rollouts" not in args(off)


def test_an_incident_quota_per_watched_namespace_holds_on_the_server(testenv: Cluster, namespace: str, crds) -> None:
    docs = render(testenv, "incidentQuota.enabled=true", "incidentQuota.max=1", f"watchNamespaces={{{namespace}}}")
    (quota,) = [d for d in docs if d["kind"] == "ResourceQuota"]
    assert quota["metadata"]["namespace"] == namespace and quota["spec"]["hard"] == {
        "count/incidents.hemostat.dev": "1"
    }
    testenv.apply(quota, namespace)

    def declare(name: str) -> subprocess.CompletedProcess:
        spec = {"severity": "SEV3", "summary": "s", "target": {"name": "web"}, "source": "manual"}
        body = {"apiVersion": "hemostat.dev/v1alpha1", "kind": "Incident", "metadata": {"name": name}, "spec": spec}
        return testenv.kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(body), check=False)

    assert declare("first").returncode == 0
    wait_for("the quota counts it", lambda: declare("probe").returncode != 0, 30)
    refused = declare("second")
    assert "exceeded quota" in refused.stderr and "count/incidents.hemostat.dev" in refused.stderr
    failed = helm(
        testenv,
        "template",
        "x",
        str(CHART),
        "--kube-version",
        KUBE_VERSION,
        "--set",
        "incidentQuota.enabled=true",
        check=False,
    )
    assert failed.returncode != 0 and "incidentQuota.enabled needs watchNamespaces" in failed.stderr


def test_the_optional_egress_policy_allows_dns_and_the_named_peers_only(testenv: Cluster, namespace: str) -> None:
    sets = [
        "networkPolicy.egress.enabled=true",
        "networkPolicy.egress.apiServer[0].cidr=10.0.0.1/32",
        "networkPolicy.egress.apiServer[0].port=6443",
        "networkPolicy.egress.webhooks[0].cidr=203.0.113.0/24",
        "networkPolicy.egress.webhooks[0].port=443",
    ]
    (policy_,) = [d for d in render(testenv, *sets) if d["kind"] == "NetworkPolicy"]
    assert policy_["spec"]["policyTypes"] == ["Egress"]
    (deployment,) = [d for d in render(testenv, *sets) if d["kind"] == "Deployment"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert policy_["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    peers = [
        (r["to"][0].get("ipBlock", {}).get("cidr"), [p["port"] for p in r["ports"]]) for r in policy_["spec"]["egress"]
    ]
    assert peers == [(None, [53, 53]), ("10.0.0.1/32", [6443]), ("203.0.113.0/24", [443])]
    # the API server accepts it (kwok runs no CNI, so it is not enforced here)
    policy_["metadata"]["namespace"] = namespace
    testenv.apply(policy_, namespace)
    assert not [d for d in render(testenv) if d["kind"] == "NetworkPolicy"], "off by default"
    args = ["template", "x", str(CHART), "--kube-version", KUBE_VERSION, "--set", "networkPolicy.egress.enabled=true"]
    failed = helm(testenv, *args, check=False)
    assert failed.returncode != 0 and "needs networkPolicy.egress.apiServer" in failed.stderr


def test_helm_lint(testenv: Cluster) -> None:
    out = helm(testenv, "lint", str(CHART), "--strict", "--kube-version", KUBE_VERSION).stdout
    assert "0 chart(s) failed" in out


def test_rbac_grants_only_what_the_code_uses(testenv: Cluster) -> None:
    docs = render(testenv)
    (role,) = [d for d in docs if d["kind"] == "ClusterRole" and d["metadata"]["name"] == "hemostat"]
    grants = {
        (g, r): set(rule["verbs"]) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]
    }
    assert grants == {
        ("hemostat.dev", "mitigationpolicies"): {"get", "list", "watch", "patch"},
        ("hemostat.dev", "mitigationpolicies/status"): {"patch"},
        ("hemostat.dev", "incidents"): {"get", "list", "watch", "create", "patch", "delete"},
        ("hemostat.dev", "incidents/status"): {"patch"},
        ("apps", "deployments"): {"get", "list", "watch", "patch"},
        ("apps", "replicasets"): {"list", "watch"},
        ("autoscaling", "horizontalpodautoscalers"): {"list", "watch", "patch"},
        ("", "pods"): {"list"},
        ("", "events"): {"create"},
        ("", "configmaps"): {"get", "patch"},
        ("core.openfeature.dev", "featureflags"): {"get", "patch"},
    }
    (check,) = [d for d in docs if d["kind"] == "ClusterRole" and d["metadata"]["name"] == "hemostat-admission-check"]
    assert check["rules"] == [
        {
            "apiGroups": ["admissionregistration.k8s.io"],
            "resources": ["validatingadmissionpolicies", "validatingadmissionpolicybindings"],
            "resourceNames": ["hemostat-incident-requests", "hemostat-incident-fields", "hemostat-incident-approvals"],
            "verbs": ["get"],
        }
    ]
    (dep,) = [d for d in docs if d["kind"] == "Deployment"]
    assert "--admission-policies=hemostat" in dep["spec"]["template"]["spec"]["containers"][0]["args"]
    (leader,) = [d for d in docs if d["kind"] == "Role"]  # only the Lease, only in the release namespace
    assert leader["metadata"]["namespace"] == "hemostat-system"
    assert leader["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"]}
    ]


def test_secrets_are_readable_only_when_notifications_ask_for_it(testenv: Cluster) -> None:
    def secret_rules(docs: list[dict]) -> list[dict]:
        return [
            r for d in docs if d["kind"] in ("ClusterRole", "Role") for r in d["rules"] if "secrets" in r["resources"]
        ]

    assert secret_rules(render(testenv)) == []
    watched = "watchNamespaces={shop,payments}"
    assert (
        secret_rules(render(testenv, watched, "notifications.readSecrets=true"))
        == [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}] * 2
    )  # a Role in each watched namespace, nothing cluster-wide
    args = [
        "template",
        "hemostat",
        str(CHART),
        "--kube-version",
        KUBE_VERSION,
        "--set",
        "notifications.readSecrets=true",
    ]
    refused = helm(testenv, *args, check=False)
    assert refused.returncode != 0 and "notifications.readSecrets needs watchNamespaces" in refused.stderr


def test_watch_namespaces_gives_roles_not_a_cluster_role(testenv: Cluster) -> None:
    docs = render(testenv, "watchNamespaces={shop,payments}", "replicaCount=2")
    # cluster-wide, the operator may only read its own two admission policies (fail closed without them)
    assert [d["roleRef"]["name"] for d in docs if d["kind"] == "ClusterRoleBinding"] == ["hemostat-admission-check"]
    # the other ClusterRoles are the ones for people, aggregated into view / edit / admin
    assert {d["metadata"]["name"] for d in docs if d["kind"] == "ClusterRole"} == {
        "hemostat-view",
        "hemostat-responder",
        "hemostat-admin",
        "hemostat-admission-check",
    }
    roles = {d["metadata"]["namespace"]: d for d in docs if d["kind"] == "Role"}
    assert set(roles) == {"shop", "payments", "hemostat-system"}
    assert roles["shop"]["rules"] == roles["payments"]["rules"]
    (dep,) = [d for d in docs if d["kind"] == "Deployment"]
    assert dep["spec"]["replicas"] == 2
    args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--namespace=shop" in args and "--namespace=payments" in args and "--leader-election" in args


def test_security_context_matches_the_image(testenv: Cluster) -> None:
    (dep,) = [d for d in render(testenv) if d["kind"] == "Deployment"]
    pod = dep["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    user = re.search(r"^USER (\d+):(\d+)$", (ROOT / "Dockerfile").read_text(), re.M)
    assert user, "the Dockerfile must name a numeric non-root USER"
    assert (pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"]) == (
        int(user.group(1)),
        int(user.group(2)),
    )


@pytest.mark.parametrize(
    ("value", "fragment"), [("replicaCount=-1", "replicaCount"), ("prometheusUrl=ftp://x", "prometheusUrl")]
)
def test_values_schema_rejects_bad_values(testenv: Cluster, value: str, fragment: str) -> None:
    args = ["template", "hemostat", str(CHART), "--kube-version", KUBE_VERSION, "--set", value]
    proc = helm(testenv, *args, check=False)
    assert proc.returncode != 0 and fragment in proc.stderr


def test_day_two_values_reach_the_pod(testenv: Cluster) -> None:
    docs = render(
        testenv,
        "extraArgs={--incident-retention=7d}",
        "extraEnv[0].name=HTTPS_PROXY",
        "extraEnv[0].value=http://proxy:3128",
        "extraVolumes[0].name=ca",
        "extraVolumes[0].configMap.name=corp-ca",
        "extraVolumeMounts[0].name=ca",
        "extraVolumeMounts[0].mountPath=/etc/corp-ca",
        "podLabels.team=sre",
        "podAnnotations.owner=sre",
        "priorityClassName=system-cluster-critical",
        "nodeSelector.pool=system",
        "tolerations[0].key=dedicated",
        "tolerations[0].operator=Exists",
        "topologySpreadConstraints[0].maxSkew=1",
        "topologySpreadConstraints[0].topologyKey=kubernetes.io/hostname",
        "topologySpreadConstraints[0].whenUnsatisfiable=ScheduleAnyway",
        "logFormat=json",
        "prometheusAllowedUrls={https://thanos.example/api/prom}",
    )
    (dep,) = [d for d in docs if d["kind"] == "Deployment"]
    pod = dep["spec"]["template"]
    container = pod["spec"]["containers"][0]
    assert container["args"][-1] == "--incident-retention=7d" and "--log-format=json" in container["args"]
    assert "--allowed-prometheus-url=https://thanos.example/api/prom" in container["args"]
    assert {"name": "HTTPS_PROXY", "value": "http://proxy:3128"} in container["env"]
    assert container["volumeMounts"] == [{"name": "ca", "mountPath": "/etc/corp-ca"}]
    assert pod["spec"]["volumes"] == [{"name": "ca", "configMap": {"name": "corp-ca"}}]
    assert pod["metadata"]["labels"]["team"] == "sre" and pod["metadata"]["annotations"] == {"owner": "sre"}
    assert pod["spec"]["priorityClassName"] == "system-cluster-critical"
    assert pod["spec"]["nodeSelector"] == {"pool": "system"}
    assert pod["spec"]["tolerations"] == [{"key": "dedicated", "operator": "Exists"}]
    assert pod["spec"]["topologySpreadConstraints"][0]["topologyKey"] == "kubernetes.io/hostname"
    # the Service selects by the fixed selector labels, never by podLabels
    assert dep["spec"]["selector"]["matchLabels"] == {
        "app.kubernetes.io/name": "hemostat",
        "app.kubernetes.io/instance": "hemostat",
    }


def test_updates_keep_a_replica_and_drains_keep_one_when_there_are_several(testenv: Cluster) -> None:
    (dep,) = [d for d in render(testenv) if d["kind"] == "Deployment"]
    assert dep["spec"]["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    assert not [d for d in render(testenv) if d["kind"] == "PodDisruptionBudget"], "one replica: a PDB blocks drains"
    (pdb,) = [d for d in render(testenv, "replicaCount=2") if d["kind"] == "PodDisruptionBudget"]
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"]


def test_metrics_and_health_ports_cannot_collide(testenv: Cluster) -> None:
    args = ["template", "hemostat", str(CHART), "--kube-version", KUBE_VERSION]
    proc = helm(testenv, *args, "--set", "metrics.port=9000", "--set", "health.port=9000", check=False)
    assert proc.returncode != 0 and "metrics.port and health.port are both 9000" in proc.stderr


def test_the_chart_works_as_a_subchart_with_global_values(testenv: Cluster, tmp_path: Path) -> None:
    parent = tmp_path / "platform"
    (parent / "charts").mkdir(parents=True)
    shutil.copytree(CHART, parent / "charts" / "hemostat")
    (parent / "Chart.yaml").write_text(
        "apiVersion: v2\nname: platform\nversion: 1.0.0\ndependencies:\n- {name: hemostat, version: 0.1.0}\n"
    )
    (parent / "values.yaml").write_text(
        "global: {imageRegistry: registry.corp, labels: {team: platform}}\nhemostat: {logFormat: json}\n"
    )
    out = helm(testenv, "template", "platform", str(parent), "--kube-version", KUBE_VERSION).stdout
    (dep,) = [d for d in yaml.safe_load_all(out) if d and d["kind"] == "Deployment"]
    assert "--log-format=json" in dep["spec"]["template"]["spec"]["containers"][0]["args"]


def _keeps_probe_field(testenv: Cluster, namespace: str) -> bool:
    """Does the API server serve Incident spec.upgradeProbe, or prune it as unknown?"""
    incident = {
        "apiVersion": "hemostat.dev/v1alpha1",
        "kind": "Incident",
        "metadata": {"name": "probe", "namespace": namespace},
        "spec": {"severity": "SEV3", "summary": "probe", "target": {"name": "x"}, "upgradeProbe": "v2"},
    }
    create = ["create", "--dry-run=server", "--validate=ignore", "-o", "json", "-f", "-"]  # prune, do not refuse
    out = testenv.kubectl(*create, input=json.dumps(incident)).stdout
    return json.loads(out)["spec"].get("upgradeProbe") == "v2"


def test_helm_upgrade_upgrades_the_crds_and_uninstall_keeps_them(
    testenv: Cluster, crds: None, namespace: str, tmp_path: Path
) -> None:
    release, system = f"crd-{namespace[-8:]}", f"crd-{namespace[-8:]}-system"
    names = ["incidents.hemostat.dev", "mitigationpolicies.hemostat.dev"]
    chart = tmp_path / "hemostat"
    shutil.copytree(CHART, chart)
    common = ["-n", system, "--set", f"watchNamespaces={{{namespace}}}"]
    try:
        # the session created the CRDs; hand them to this release as Helm adopts objects
        for name in names:
            testenv.kubectl("annotate", "--overwrite", "crd", name, f"meta.helm.sh/release-name={release}")
            testenv.kubectl("annotate", "--overwrite", "crd", name, f"meta.helm.sh/release-namespace={system}")
            testenv.kubectl("label", "--overwrite", "crd", name, "app.kubernetes.io/managed-by=Helm")
        helm(testenv, "install", release, str(chart), "--create-namespace", *common)
        assert not _keeps_probe_field(testenv, namespace), "the field must be unknown before the upgrade"

        # the next chart version adds a field to the Incident CRD
        path = chart / "files" / "crds" / "hemostat.dev_incidents.yaml"
        crd = yaml.safe_load(path.read_text())
        spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
        spec["properties"]["upgradeProbe"] = {"type": "string"}
        path.write_text(yaml.safe_dump(crd))
        helm(testenv, "upgrade", release, str(chart), *common)
        wait_for("the new field served", lambda: _keeps_probe_field(testenv, namespace), 30)

        helm(testenv, "uninstall", release, "-n", system)
        for name in names:
            assert testenv.get("crd", name)["metadata"]["name"] == name, "uninstall must keep the CRDs"
    finally:
        # back to the session's CRDs exactly (replace drops the added field and Helm's ownership)
        testenv.kubectl("replace", "-f", str(ROOT / "crds"))
        testenv.kubectl("delete", "namespace", system, "--wait=false", check=False)


MONITORING = CHART / "files" / "monitoring"


def dashboard_queries(job: str) -> list[tuple[str, str]]:
    """The dashboard's queries, with Grafana's variables as a user's dashboard would fill them."""
    dashboard = json.loads((MONITORING / "hemostat-dashboard.json").read_text())
    fill = {"$job": job, "$__rate_interval": "1m", "$__range": "1h"}
    queries = []
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            expr = target["expr"]
            for var, value in fill.items():
                expr = expr.replace(var, value)
            assert "$" not in expr, f"unfilled variable in {expr}"
            queries.append((panel["title"], expr))
    return queries


def alert_rules() -> list[tuple[str, str, set[str]]]:
    """(alert, expression, the metrics it reads) for each rule of the shipped rule file."""
    groups = yaml.safe_load((MONITORING / "hemostat-rules.yaml").read_text())["groups"]
    return [
        (rule["alert"], rule["expr"], set(re.findall(r"\bhemostat_[a-z_]+\b|\bup(?=\{)", rule["expr"])))
        for group in groups
        for rule in group["rules"]
    ]


def test_alert_rules_pass_promtool_and_their_unit_tests(testenv: Cluster, tmp_path: Path) -> None:
    rules = MONITORING / "hemostat-rules.yaml"
    subprocess.run(["promtool", "check", "rules", str(rules)], check=True, capture_output=True)
    tests = ROOT / "tests" / "monitoring" / "hemostat-rules.test.yaml"
    proc = subprocess.run(["promtool", "test", "rules", str(tests)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # the PrometheusRule the chart renders carries the same groups
    (rule,) = [d for d in render(testenv, "monitoring.prometheusRule.enabled=true") if d["kind"] == "PrometheusRule"]
    assert rule["spec"] == yaml.safe_load(rules.read_text())
    (cm,) = [d for d in render(testenv, "monitoring.grafanaDashboard.enabled=true") if d["kind"] == "ConfigMap"]
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(cm["data"]["hemostat.json"]) == json.loads((MONITORING / "hemostat-dashboard.json").read_text())


def test_plain_manifests_are_rendered_from_the_chart(tmp_path: Path, testenv: Cluster) -> None:
    out = tmp_path / "install.yaml"
    subprocess.run([str(ROOT / "hack" / "render-manifests.sh"), str(out)], check=True, env=testenv.env)
    assert out.read_text() == (ROOT / "manifests" / "install.yaml").read_text(), "run `make manifests`"


def test_people_get_hemostat_rights_through_view_edit_and_admin(
    testenv: Cluster, namespace: str, installed, tmp_path: Path
) -> None:
    for role in ("view", "edit", "admin"):
        binding = f"{role}-binding"
        testenv.kubectl(
            "create", "rolebinding", binding, f"--clusterrole={role}", f"--user={role}-user", "-n", namespace
        )

    def can(user: str, verb: str, resource: str) -> bool:
        resource, _, sub = resource.partition("/")
        args = ["auth", "can-i", verb, resource, "-n", namespace, f"--as={user}", f"--subresource={sub}"]
        return testenv.kubectl(*args, check=False).stdout.strip() == "yes"

    expected = {
        ("view-user", "list", "incidents.hemostat.dev"): True,
        ("view-user", "get", "mitigationpolicies.hemostat.dev"): True,
        ("view-user", "create", "incidents.hemostat.dev"): False,
        ("edit-user", "create", "incidents.hemostat.dev"): True,
        ("edit-user", "patch", "incidents.hemostat.dev"): True,  # ack, notes, resolve
        ("edit-user", "create", "mitigationpolicies.hemostat.dev"): False,
        ("edit-user", "patch", "incidents.hemostat.dev/status"): False,
        ("admin-user", "create", "mitigationpolicies.hemostat.dev"): True,
        ("admin-user", "delete", "incidents.hemostat.dev"): True,
        ("nobody", "list", "incidents.hemostat.dev"): False,
    }
    # the controller-manager aggregates the rules into the built-in roles a moment after install
    wait_for("aggregated", lambda: {k: can(*k) for k in expected} == expected, 30)


def test_the_operator_may_change_only_configmaps_that_opted_in(
    testenv: Cluster, namespace: str, installed, tmp_path: Path
) -> None:
    release, system = installed
    kubeconfig = token_kubeconfig(testenv, f"{release}-hemostat", system, namespace, tmp_path / "sa.kubeconfig")
    for name, labels in (("opted-in", {"hemostat.dev/flag-source": "true"}), ("other", {})):
        cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels}, "data": {"a": "1"}}
        testenv.apply(cm, namespace)
    patch = ["patch", "configmap", "--type=merge", "-p", '{"data":{"a":"2"}}', "--kubeconfig", str(kubeconfig)]

    def patch_as_operator(name: str) -> subprocess.CompletedProcess:
        return testenv.kubectl(*patch[:2], name, *patch[2:], "-n", namespace, check=False)

    # a new admission policy takes a moment to be enforced; ask without writing
    dry = [*patch[:2], "other", *patch[2:], "-n", namespace, "--dry-run=server"]
    wait_for("the admission policy enforced", lambda: testenv.kubectl(*dry, check=False).returncode != 0, 30)
    # RBAC allows both (it cannot tell ConfigMaps apart); the admission policy does not
    assert patch_as_operator("opted-in").returncode == 0
    refused = patch_as_operator("other")
    assert refused.returncode != 0
    assert "hemostat-flag-sources: the operator may change only configmaps labelled hemostat.dev/flag-source=true" in (
        refused.stderr
    )
    assert f"{namespace}/other is not" in refused.stderr
    assert testenv.get("configmap", "other", namespace)["data"] == {"a": "1"}
    # nor may it take the label off, or put it on
    label = ["label", "configmap", "--overwrite", "--kubeconfig", str(kubeconfig), "-n", namespace]
    assert testenv.kubectl(*label, "opted-in", "hemostat.dev/flag-source-", check=False).returncode != 0
    assert testenv.kubectl(*label, "other", "hemostat.dev/flag-source=true", check=False).returncode != 0
    # a person is not the operator: the policy does not apply to them
    assert testenv.kubectl("patch", "configmap", "other", "-n", namespace, *patch[2:5]).returncode == 0

    # FeatureFlags opt in the same way (the OpenFeature Operator's own CRD)
    crd = ROOT / "tests/e2e/fixtures/crds/open-feature-operator/core.openfeature.dev_featureflags.yaml"
    testenv.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crd))
    testenv.kubectl("wait", "--for=condition=Established", "crd/featureflags.core.openfeature.dev", "--timeout=60s")
    kind = "featureflags.core.openfeature.dev"
    for name, labels in (("opted-in", {"hemostat.dev/flag-source": "true"}), ("other", {})):
        flags = {"flagSpec": {"flags": {"f": {"state": "ENABLED", "variants": {"on": True}, "defaultVariant": "on"}}}}
        ff = {"kind": "FeatureFlag", "metadata": {"name": name, "labels": labels}, "spec": flags}
        testenv.apply({"apiVersion": "core.openfeature.dev/v1beta1", **ff}, namespace)
    flip = ["--type=merge", "-p", '{"metadata":{"annotations":{"x":"1"}}}', "--kubeconfig", str(kubeconfig)]
    assert testenv.kubectl("patch", kind, "opted-in", "-n", namespace, *flip, check=False).returncode == 0
    refused = testenv.kubectl("patch", kind, "other", "-n", namespace, *flip, check=False)
    assert refused.returncode != 0
    assert "the operator may change only featureflags labelled hemostat.dev/flag-source=true" in refused.stderr


@pytest.mark.image
def test_operator_works_with_exactly_the_charts_permissions(
    testenv: Cluster, namespace: str, simulator, installed, operators, tmp_path: Path
) -> None:
    release, system = installed
    account = f"{release}-hemostat"  # the chart's fullname
    sa = f"system:serviceaccount:{system}:{account}"
    kubeconfig = token_kubeconfig(testenv, account, system, namespace, tmp_path / "sa.kubeconfig")

    def can(verb: str, resource: str, ns: str = namespace) -> bool:
        out = testenv.kubectl("auth", "can-i", verb, resource, "-n", ns, f"--as={sa}", check=False).stdout.strip()
        return out == "yes"

    assert can("patch", "deployments.apps") and can("create", "events") and can("list", "replicasets.apps")
    assert can("list", "pods") and not can("get", "pods") and not can("watch", "pods")
    assert can("update", "leases.coordination.k8s.io", ns=system) and not can("update", "leases.coordination.k8s.io")
    for verb, resource in [
        ("delete", "deployments.apps"),
        ("create", "deployments.apps"),
        ("get", "secrets"),
        ("update", "deployments.apps"),
        ("delete", "pods"),
    ]:
        assert not can(verb, resource), f"the chart grants {verb} {resource}"
    assert not can("patch", "deployments.apps", ns="default"), "a Role for one namespace reached another"

    port = free_port()
    target = testenv.prometheus_targets / f"operator-{namespace}.json"
    target.write_text(json.dumps([{"targets": [f"127.0.0.1:{port}"], "labels": {"job": "hemostat-operator"}}]))
    try:
        operators.start(
            namespace,
            *("--metrics-port", str(port)),
            *("--leader-election", "--lease-namespace", system, "--lease-name", account),
            f"--admission-policies={account}",  # as the chart runs it: it fails closed without them
            env={"KUBECONFIG": str(kubeconfig)},
        )
        testenv.apply(app("orders", "registry.local/orders:v1"), namespace)
        wait_ready(testenv, namespace, "orders")
        testenv.apply(policy("orders"), namespace)
        wait_for("healthy", lambda: target_verdict(testenv, namespace, "orders", "orders") == "Healthy", 60)
        rollout(testenv, namespace, "orders", "registry.local/orders:v2", error_rate=0.5)
        inc = wait_phase(testenv, namespace, "Resolved", timeout=120)
        assert inc["status"]["actions"][0]["result"] == "Succeeded"
        assert deployment_state(testenv, namespace, "orders") == ("3", "registry.local/orders:v1")
        # the real Prometheus scrapes the operator's own metrics
        query = 'hemostat_mitigation_actions_total{job="hemostat-operator",step="rollback",result="Succeeded"}'
        wait_for("the operator's metrics in Prometheus", lambda: prom_value(testenv.prometheus_url, query) == 1, 30)
        # a person's request goes through the same permissions (the Incident is read fresh)
        request = {
            "apiVersion": "hemostat.dev/v1alpha1",
            "kind": "Incident",
            "metadata": {"name": "support-1"},
            "spec": {
                "severity": "SEV2",
                "summary": "slow",
                "target": {"name": "orders"},
                "source": "manual",
                "mitigation": {"scaleUp": {"factor": 2, "maxReplicas": 10}},
            },
        }
        testenv.apply(request, namespace)
        wait_for(
            "the request carried out",
            lambda: testenv.get("deployment", "orders", namespace)["spec"]["replicas"] == 4,
            60,
        )
        # every panel of the shipped dashboard shows data from this operator
        for title, expr in dashboard_queries(job="hemostat-operator"):
            wait_for(f"data for the panel {title!r}: {expr}", lambda e=expr: prom_query(testenv.prometheus_url, e), 30)
        # every alert is valid PromQL to this Prometheus, on metrics this operator really exports
        for alert, expr, metrics in alert_rules():
            prom_query(testenv.prometheus_url, expr)  # an invalid expression raises (HTTP 400)
            for metric in metrics:
                series = f'{{__name__="{metric}", job="hemostat-operator"}}'
                wait_for(f"{metric} of {alert}", lambda q=series: prom_query(testenv.prometheus_url, q), 30)
    finally:
        target.unlink(missing_ok=True)
    # "Forbidden" is how both kopf and the kubernetes client report a 403
    forbidden = [line for line in operators.logs().splitlines() if "Forbidden" in line]
    assert forbidden == [], forbidden


def test_a_second_release_watching_a_namespace_another_watches_is_refused(testenv: Cluster, crds) -> None:
    """Two operators on one namespace would both run its policies, and each release's incident-fields policy
    would refuse the other's operator: the chart refuses the overlap at install, naming the other release."""
    suffix = uuid.uuid4().hex[:6]
    shop, payments = f"shop-{suffix}", f"payments-{suffix}"
    installed: list[tuple[str, str]] = []

    def install(release: str, *sets: str) -> subprocess.CompletedProcess:
        system = f"{release}-system"
        args = ["install", release, str(CHART), "-n", system, "--create-namespace", "--set", "crds.install=false"]
        proc = helm(testenv, *args, *(a for s in sets for a in ("--set", s)), check=False)
        if proc.returncode == 0:
            installed.append((release, system))
        return proc

    for ns in (shop, payments):
        testenv.kubectl("create", "namespace", ns)
    try:
        assert install(f"a-{suffix}", f"watchNamespaces={{{shop}}}").returncode == 0
        overlap = install(f"b-{suffix}", f"watchNamespaces={{{payments},{shop}}}")
        assert overlap.returncode != 0
        assert (
            f"Hemostat release a-{suffix} (namespace a-{suffix}-system) already watches {shop}: two operators would "
            "run the same policies and each release's admission policies would refuse the other's operator; give "
            "each release its own watchNamespaces"
        ) in overlap.stderr
        everything = install(f"c-{suffix}")  # all namespaces overlaps every release
        assert everything.returncode != 0 and f"already watches {shop}" in everything.stderr
        assert install(f"d-{suffix}", f"watchNamespaces={{{payments}}}").returncode == 0  # no overlap
        # an upgrade of a release never conflicts with itself
        assert (
            helm(testenv, "upgrade", f"a-{suffix}", str(CHART), "-n", f"a-{suffix}-system", "--reuse-values").returncode
            == 0
        )
    finally:
        for release, system in installed:
            helm(testenv, "uninstall", release, "-n", system, check=False)
            testenv.kubectl("delete", "namespace", system, "--wait=false", check=False)
        testenv.kubectl("delete", "namespace", shop, payments, "--wait=false", check=False)


def test_webhook_destinations_reach_the_pod_as_the_operator_reads_them(testenv: Cluster, tmp_path: Path) -> None:
    token = tmp_path / "pd-token"
    token.write_text("pd")
    docs = render(
        testenv,
        "notifications.destinations[0].url=https://events.pagerduty.com/",
        f"notifications.destinations[0].bearerTokenFile={token}",
        "notifications.destinations[1].url=https://hooks.slack.com/services/",
    )
    (config,) = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("webhook-destinations")]
    (dep,) = [d for d in docs if d["kind"] == "Deployment"]
    pod = dep["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert "--webhook-destinations=/etc/hemostat/webhooks/destinations.yaml" in container["args"]
    assert {"name": "webhook-destinations", "mountPath": "/etc/hemostat/webhooks", "readOnly": True} in (
        container["volumeMounts"]
    )
    assert {"name": "webhook-destinations", "configMap": {"name": config["metadata"]["name"]}} in pod["volumes"]
    path = tmp_path / "destinations.yaml"
    path.write_text(config["data"]["destinations.yaml"])
    loaded = load_destinations(str(path))
    assert [(url, auth.bearer_token_file) for url, auth in loaded] == [
        ("https://events.pagerduty.com/", token),
        ("https://hooks.slack.com/services/", None),
    ]


def test_alertmanager_receiver_is_served_behind_a_service_with_its_token_mounted(testenv: Cluster) -> None:
    docs = render(
        testenv,
        "alertmanager.enabled=true",
        "alertmanager.tokenSecret.name=am-token",
        "alertmanager.notifyPolicy=oncall",
    )
    (service,) = [d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == "hemostat-alerts"]
    assert service["spec"]["ports"] == [{"name": "alerts", "port": 9095, "targetPort": "alerts"}]
    (dep,) = [d for d in docs if d["kind"] == "Deployment"]
    pod = dep["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    args = {"--alertmanager-port=9095", "--alertmanager-token-file=/etc/hemostat/alerts/token"}
    assert args | {"--alert-notify-policy=oncall"} <= set(container["args"])
    assert {"name": "alerts", "containerPort": 9095} in container["ports"]
    assert {"name": "alerts-token", "secret": {"secretName": "am-token"}} in pod["volumes"]
    off = render(testenv)
    assert not [d for d in off if d["kind"] == "Service" and d["metadata"]["name"] == "hemostat-alerts"]

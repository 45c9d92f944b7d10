"""The `hemostat` command.

User mistakes (a bad flag, a missing kubeconfig, an unknown incident) end in
one clear line on stderr and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

from . import __version__
from .errors import UserError
from .models.common import parse_duration

EXIT_USAGE = 2


def _run(args: argparse.Namespace) -> int:
    from .config import OperatorConfig, load_kube_config
    from .outbound import Webhooks, check_urls, client_auth, load_destinations
    from .runner import run_operator

    if args.metrics_port and args.metrics_port == args.health_port:
        raise UserError(f"--metrics-port and --health-port are both {args.metrics_port}: give each its own port")
    check_urls("--allowed-prometheus-url", args.allowed_prometheus_url or ())
    auth = {
        what: client_auth(
            what,
            getattr(args, f"{what}_ca_file"),
            getattr(args, f"{what}_cert_file"),
            getattr(args, f"{what}_key_file"),
            getattr(args, f"{what}_bearer_token_file"),
            getattr(args, f"{what}_header") or (),
        )
        for what in ("prometheus", "webhook")
    }
    load_kube_config(args.kubeconfig)
    retention = _retention(args.incident_retention)
    config = OperatorConfig(
        incident_retention=retention,
        prometheus_url=args.prometheus_url,
        namespaces=tuple(args.namespace or ()),
        dry_run=args.dry_run,
        metrics_port=args.metrics_port,
        health_port=args.health_port,
        bind_address=args.bind_address,
        standalone=args.standalone,
        priority=args.priority,
        leader_election=args.leader_election,
        lease_namespace=args.lease_namespace,
        lease_name=args.lease_name,
        lease_duration=args.lease_duration,
        allowed_prometheus_urls=tuple(args.allowed_prometheus_url or ()),
        argo_rollouts=args.argo_rollouts,
        prometheus_auth=auth["prometheus"],
        webhook_auth=auth["webhook"],
        webhook_auth_urls=tuple(args.webhook_auth_url or ()),
        allowed_webhook_urls=tuple(args.allowed_webhook_url or ()),
        webhook_destinations=tuple(load_destinations(args.webhook_destinations) if args.webhook_destinations else ()),
        admission_policies=args.admission_policies,
        alertmanager_port=args.alertmanager_port,
        alertmanager_token_file=args.alertmanager_token_file,
        alert_labels=(args.alert_namespace_label, args.alert_target_label, args.alert_severity_label),
        alert_notify_policy=args.alert_notify_policy,
        alert_resend_interval=_resend(args.alert_resend_interval),
    )
    if args.alertmanager_port and not (args.alertmanager_token_file and Path(args.alertmanager_token_file).is_file()):
        raise UserError(
            "--alertmanager-port needs --alertmanager-token-file (an existing file): anyone who reaches the port "
            "could otherwise open Incidents"
        )
    Webhooks.check(config.webhook_auth, config.webhook_auth_urls, config.allowed_webhook_urls)
    run_operator(config, log_level=args.log_level, log_format=args.log_format)
    return 0


def _retention(text: str) -> timedelta | None:
    if text in ("0", "0s"):
        return None
    try:
        return timedelta(days=int(text[:-1])) if text.endswith("d") else parse_duration(text)
    except ValueError:
        raise UserError(f"--incident-retention {text!r}: use e.g. 30d, 720h, or 0 to keep every Incident") from None


def _resend(text: str) -> timedelta:
    try:
        span = parse_duration(text)
    except ValueError:
        span = timedelta(0)
    if span <= timedelta(0):
        raise UserError(f"--alert-resend-interval {text!r}: use a duration such as 5m (the route's repeat_interval)")
    return span


def _crds(args: argparse.Namespace) -> int:
    from .crdgen import write

    for path in write(Path(args.out)):
        print(f"wrote {path}")
    return 0


def _client(args: argparse.Namespace) -> None:
    from .config import context_namespace, load_kube_config

    load_kube_config(args.kubeconfig, in_cluster_ok=False, context=args.context)
    if args.namespace is None:  # as kubectl: the context's namespace
        args.namespace = context_namespace(args.kubeconfig, args.context)


def _incident(args: argparse.Namespace) -> int:
    from . import commands

    _client(args)
    if args.action == "list":
        print(commands.list_incidents(None if args.all_namespaces else args.namespace, args.output))
    elif args.action == "show":
        print(commands.show(args.name, args.namespace, args.output, args.chart, args.prometheus_url))
    elif args.action == "ack":
        print(commands.ack(args.name, args.namespace, args.by, args.commander))
    elif args.action == "note":
        print(commands.note(args.name, args.namespace, args.text, args.by))
    elif args.action in ("approve", "reject"):
        return commands.decide(args.name, args.namespace, args.action == "approve", args.reason, _wait(args.wait))
    else:
        print(commands.resolve(args.name, args.namespace, args.by, args.resume_gitops, args.force))
    return 0


def _postmortem(args: argparse.Namespace) -> int:
    from . import commands

    _client(args)
    out = args.output_file
    text = commands.write_postmortem(args.name, args.namespace, out, args.prometheus_url)
    print(text, end="" if not out else "\n")
    return 0


def _status_update(args: argparse.Namespace) -> int:
    from . import commands

    _client(args)
    print(commands.status_update(args.name, args.namespace))
    return 0


def _wait(text: str) -> float:
    try:
        return 0.0 if text in ("0", "0s") else parse_duration(text).total_seconds()
    except ValueError:
        raise UserError(f"--wait {text!r}: use e.g. 30s, 2m, or 0 not to wait") from None


def _ask(args: argparse.Namespace) -> int:
    from . import commands

    wait = _wait(args.wait)
    if args.step == "rollback":
        mitigation: dict[str, object] = {"rollback": {}}
    elif args.step == "scale-up":
        if args.max_replicas < 1 or not 1 < args.factor <= 10:
            raise UserError("--max-replicas must be at least 1 and --factor above 1, at most 10")
        mitigation = {"scaleUp": {"maxReplicas": args.max_replicas, "factor": args.factor}}
    else:
        source = (
            {"featureFlag": {"name": args.featureflag, "flag": args.flag}}
            if args.featureflag
            else {"configMap": {"name": args.configmap, "key": args.key, "flag": args.flag}}
        )
        mitigation = {"disableFlag": {**source, **({"offVariant": args.off_variant} if args.off_variant else {})}}
    _client(args)
    return commands.request(args.target, args.kind, args.namespace, mitigation, args.reason, args.severity, wait)


def _completion(args: argparse.Namespace) -> int:
    import shtab

    print(shtab.complete(build_parser(), shell=args.shell))
    return 0


def _report(args: argparse.Namespace) -> int:
    from . import commands

    _client(args)
    print(commands.report(None if args.all_namespaces else args.namespace, args.since))
    return 0


def _prometheus(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--prometheus-url",
        default=os.environ.get("HEMOSTAT_PROMETHEUS_URL") or os.environ.get("PROMETHEUS_URL"),
        help="where the signals' values come from for charts (env HEMOSTAT_PROMETHEUS_URL or PROMETHEUS_URL)",
    )


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-n", "--namespace", help="namespace of the incident (default: the kubeconfig context's, else default)"
    )
    p.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
    p.add_argument("--context", help="kubeconfig context (default: the current one)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kubectl hemostat" if Path(sys.argv[0]).name == "kubectl-hemostat" else "hemostat",
        description="Automated incident mitigation for Kubernetes: detect, roll back, verify, record.",
    )
    parser.add_argument("--version", action="version", version=f"hemostat {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="run the operator")
    run.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster, then $KUBECONFIG)")
    run.add_argument(
        "--prometheus-url",
        default=os.environ.get("HEMOSTAT_PROMETHEUS_URL") or os.environ.get("PROMETHEUS_URL"),
        help="default Prometheus base URL for signals (env HEMOSTAT_PROMETHEUS_URL or PROMETHEUS_URL)",
    )
    run.add_argument(
        "--argo-rollouts",
        action="store_true",
        help="watch Argo Rollouts' Rollouts (argoproj.io/v1alpha1), so policies may target them "
        "(spec.target.kind: Rollout); needs the Rollout CRD and the chart value argoRollouts.enabled",
    )
    run.add_argument(
        "--allowed-prometheus-url",
        action="append",
        metavar="URL",
        help="a Prometheus URL (and the paths under it) policies may name in prometheus.url, besides "
        "--prometheus-url (repeatable; default: only --prometheus-url)",
    )
    for what, example in (("prometheus", "X-Scope-OrgID: team-a"), ("webhook", "X-Api-Key: ...")):
        group = run.add_argument_group(f"TLS and auth for {what} requests")
        group.add_argument(f"--{what}-ca-file", metavar="FILE", help="CA bundle to verify the server with")
        group.add_argument(f"--{what}-cert-file", metavar="FILE", help="client certificate (PEM)")
        group.add_argument(f"--{what}-key-file", metavar="FILE", help="client certificate's key (PEM)")
        group.add_argument(
            f"--{what}-bearer-token-file", metavar="FILE", help="bearer token, read for every request (rotation-safe)"
        )
        group.add_argument(
            f"--{what}-header", action="append", metavar="'NAME: VALUE'", help=f"extra header, e.g. '{example}'"
        )
        if what == "webhook":
            group.add_argument(
                "--webhook-auth-url",
                action="append",
                metavar="URL",
                help="the destination (URL and the paths under it) the webhook client certificate, token and "
                "headers are sent to; no other webhook gets them (repeatable; needed with any of them)",
            )
            group.add_argument(
                "--webhook-destinations",
                metavar="FILE",
                help="webhook receivers with credentials of their own, sent only to URLs under each one's url: "
                "a YAML list of {url, caFile, certFile, keyFile, bearerTokenFile, headers} "
                "(chart: notifications.destinations)",
            )
            group.add_argument(
                "--allowed-webhook-url",
                action="append",
                metavar="URL",
                help="call only webhooks under these URLs (repeatable; default: any http(s) URL)",
            )
    run.add_argument(
        "--admission-policies",
        metavar="PREFIX",
        help="the chart's admission policies, PREFIX-incident-requests, -incident-fields and -incident-approvals "
        "(the chart passes its full name): while one is not in force the operator fails closed (refuses people's "
        "mitigation requests and approvals; adopts only Incidents it wrote a status on). Default: none checked "
        "(a development run)",
    )
    am = run.add_argument_group("Alertmanager as a source (its webhook receiver)")
    am.add_argument("--alertmanager-port", type=int, default=0, help="serve POST /alerts on this port (0: off)")
    am.add_argument("--alertmanager-token-file", metavar="FILE", help="the bearer token Alertmanager must send")
    am.add_argument("--alert-namespace-label", default="namespace", help="the label naming the target's namespace")
    am.add_argument("--alert-target-label", default="deployment", help="the label naming the target Deployment")
    am.add_argument("--alert-severity-label", default="severity", help="critical -> SEV1, error -> SEV2, ...")
    am.add_argument(
        "--alert-notify-policy",
        metavar="NAME",
        help="alert-only Incidents are notified and paged with spec.notify of the MitigationPolicy NAME in their "
        "namespace (it may have no targets); default: they notify nobody",
    )
    am.add_argument(
        "--alert-resend-interval",
        default="5m",
        metavar="DURATION",
        help="how often Alertmanager resends a firing alert here (the route's repeat_interval): alert signals "
        "read NoData for this long after a start, and for an alert not heard of for twice as long (default 5m)",
    )
    scope = run.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", action="extend", nargs="+", help="watch these namespaces (repeatable)")
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch all namespaces (default)")
    run.add_argument("--dry-run", action="store_true", help="global dry run: record, never act")
    run.add_argument(
        "--incident-retention",
        default="30d",
        help="delete a policy's Resolved Incidents this long after they resolved (default: 30d; 0 keeps all)",
    )
    run.add_argument("--metrics-port", type=int, default=8080, help="port for /metrics (0 disables)")
    run.add_argument("--health-port", type=int, default=8081, help="port for /healthz (0 disables)")
    run.add_argument("--bind-address", default="127.0.0.1", help="address for /metrics and /healthz")
    run.add_argument("--standalone", action="store_true", help="disable kopf peering (use --leader-election for HA)")
    run.add_argument("--priority", type=int, default=0, help="kopf peering priority (higher wins)")
    run.add_argument(
        "--leader-election", action="store_true", help="only the holder of a Lease acts (run several replicas for HA)"
    )
    run.add_argument(
        "--lease-namespace",
        default=os.environ.get("POD_NAMESPACE", "default"),
        help="namespace of the Lease (env POD_NAMESPACE)",
    )
    run.add_argument("--lease-name", default="hemostat", help="name of the Lease (default: hemostat)")
    run.add_argument("--lease-duration", type=float, default=15.0, help="seconds before a silent leader is replaced")
    run.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    run.add_argument(
        "--log-format", default="plain", choices=["plain", "json"], help="plain lines, or one JSON object per line"
    )
    run.set_defaults(func=_run)

    inc = sub.add_parser("incident", help="show, list, acknowledge, annotate, approve or resolve Incidents")
    inc_sub = inc.add_subparsers(dest="action", metavar="ACTION", required=True)
    ack = inc_sub.add_parser("ack", help="acknowledge (and optionally name the incident commander)")
    ack.add_argument("name")
    ack.add_argument("--commander", help="incident commander")
    note = inc_sub.add_parser("note", help="add a note to the timeline")
    note.add_argument("name")
    note.add_argument("text")
    res = inc_sub.add_parser("resolve", help="mark the incident resolved")
    res.add_argument("name")
    res.add_argument(
        "--resume-gitops",
        action="store_true",
        help="let the GitOps reconciler Hemostat paused reconcile the target again (with your own rights); "
        "refused while its Git source has not changed since the pause",
    )
    res.add_argument("--force", action="store_true", help="with --resume-gitops: resume even so")
    for p in (ack, note, res):
        _common(p)
        p.add_argument("--by", help="who you are (default: your login name)")
    for verb, says in (("approve", "take"), ("reject", "not take")):
        decide = inc_sub.add_parser(
            verb, help=f"{verb} the step the incident waits for (guardrails.approval): the operator will {says} it"
        )
        decide.add_argument("name")
        decide.add_argument("--reason", help="why (recorded in the timeline)")
        decide.add_argument("--wait", default="2m", help="follow it until the operator took it (0: do not wait)")
        _common(decide)
    inc.set_defaults(func=_incident)

    listing = inc_sub.add_parser("list", help="the Incidents of the namespace (-A: of all), newest first")
    listing.add_argument("-A", "--all-namespaces", action="store_true", help="all namespaces")
    listing.add_argument("-o", "--output", choices=["text", "wide", "json", "yaml"], default="text")
    _common(listing)
    show = inc_sub.add_parser("show", help="the Incident as a timeline (time since detection), or as an object")
    show.add_argument("name")
    show.add_argument("-o", "--output", choices=["text", "json", "yaml"], default="text", help="output format")
    show.add_argument("--chart", metavar="FILE", help="also write each signal's chart, FILE-<signal>.png and .svg")
    _prometheus(show)
    _common(show)

    update = sub.add_parser("status-update", help="a status update ready to post (the playbooks' template)")
    update.add_argument("name")
    _common(update)
    update.set_defaults(func=_status_update)

    for step, what in (
        ("rollback", "roll back (a canary: abort) to the revision before"),
        ("scale-up", "scale up (or raise the minReplicas of its HPA)"),
        ("disable-flag", "turn an OpenFeature flag off (its kill switch)"),
    ):
        ask = sub.add_parser(step, help=f"ask the operator to {what}: a manual Incident, with your own rights")
        ask.add_argument("target", metavar="NAME", help="the Deployment (or --kind Rollout)")
        ask.add_argument("--kind", choices=["Deployment", "Rollout"], default="Deployment")
        ask.add_argument("--reason", help="what people see as the Incident's summary")
        ask.add_argument("--severity", choices=["SEV1", "SEV2", "SEV3", "SEV4"], default="SEV2")
        ask.add_argument(
            "--wait", default="2m", help="follow it this long, printing the timeline (0: do not wait; default 2m)"
        )
        if step == "scale-up":
            ask.add_argument("--max-replicas", type=int, required=True, help="never more than this")
            ask.add_argument("--factor", type=float, default=2.0, help="replicas x factor (default 2)")
        if step == "disable-flag":
            source = ask.add_mutually_exclusive_group(required=True)
            source.add_argument("--configmap", metavar="NAME", help="the ConfigMap holding the flagd JSON")
            source.add_argument("--featureflag", metavar="NAME", help="the OpenFeature Operator FeatureFlag")
            ask.add_argument("--flag", required=True, help="the flag's key")
            ask.add_argument("--key", default="flags.flagd.json", help="the ConfigMap's data key")
            ask.add_argument("--off-variant", help="the variant to force (default: the false one, or 'off')")
        _common(ask)
        ask.set_defaults(func=_ask, step=step)

    comp = sub.add_parser("completion", help="print a shell completion script (bash, zsh)")
    comp.add_argument("shell", choices=["bash", "zsh"])
    comp.set_defaults(func=_completion)

    pm = sub.add_parser("postmortem", help="draft a blameless postmortem (Markdown) from an Incident")
    pm.add_argument("name")
    pm.add_argument("-f", "--output-file", help="write to this file (and each signal's chart beside it)")
    _prometheus(pm)
    _common(pm)
    pm.set_defaults(func=_postmortem)

    rep = sub.add_parser("report", help="incidents by severity with MTTD / MTTM / MTTR (median and p90)")
    _common(rep)
    rep.add_argument("-A", "--all-namespaces", action="store_true", help="all namespaces")
    rep.add_argument("--since", default="30d", help="look back this far (default: 30d; e.g. 12h, 7d)")
    rep.set_defaults(func=_report)

    crds = sub.add_parser("crds", help="write the CustomResourceDefinitions generated from the models")
    crds.add_argument("--out", default="crds", help="output directory (default: crds)")
    crds.set_defaults(func=_crds)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"hemostat: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

{{- define "hemostat.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "hemostat.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "hemostat.labels" -}}
app.kubernetes.io/name: {{ include "hemostat.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "hemostat.selectorLabels" -}}
app.kubernetes.io/name: {{ include "hemostat.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "hemostat.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "hemostat.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Exactly what the operator calls; the e2e suite runs it with these rules and nothing more. */}}
{{- define "hemostat.rules" -}}
- apiGroups: [hemostat.dev]
  resources: [mitigationpolicies]
  verbs: [get, list, watch, patch]    # kopf: watch, finalizer and bookkeeping annotations
- apiGroups: [hemostat.dev]
  resources: [mitigationpolicies/status]
  verbs: [patch]
- apiGroups: [hemostat.dev]
  resources: [incidents]
  verbs: [get, list, watch, create, patch, delete]  # kopf watches manual ones; read fresh; Resolved ones expire
- apiGroups: [hemostat.dev]
  resources: [incidents/status]
  verbs: [patch]
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, patch]    # rollback / canary abort; a new revision wakes its policies; never create or delete
- apiGroups: [apps]
  resources: [replicasets]
  verbs: [list, watch]                # revision history (a watch cache)
- apiGroups: [autoscaling]
  resources: [horizontalpodautoscalers]
  verbs: [list, watch, patch]         # scale-up raises an HPA's minReplicas instead of fighting it
- apiGroups: [""]
  resources: [pods]
  verbs: [list]                       # only a stalled rollout's: do its new Pods crash, or not fit?
- apiGroups: [""]
  resources: [events]
  verbs: [create]                     # the incident timeline
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, patch]                 # disableFlag: the flagd JSON a kill switch flips
- apiGroups: [core.openfeature.dev]
  resources: [featureflags]
  verbs: [get, patch]                 # disableFlag on an OpenFeature Operator FeatureFlag
{{- if .Values.argoRollouts.enabled }}
- apiGroups: [argoproj.io]
  resources: [rollouts]
  verbs: [get, list, watch, patch]    # Rollouts as targets: watched, undone (spec.template), ledger and marker
- apiGroups: [argoproj.io]
  resources: [rollouts/status]
  verbs: [patch]                      # abort an update in progress (status.abort), as kubectl argo rollouts abort
{{- end }}
{{- if .Values.gitops.fluxHelmReleases }}
- apiGroups: [helm.toolkit.fluxcd.io]
  resources: [helmreleases]
  verbs: [get, patch]                 # suspended before a step on what it applied, so the step sticks
{{- end }}
{{- if and .Values.gitops.argoCDApplications (not .Values.watchNamespaces) }}
- apiGroups: [argoproj.io]
  resources: [applications]
  verbs: [get, patch]                 # self-heal off before a step on what it applied, so the step sticks
{{- end }}
{{- if .Values.notifications.readSecrets }}
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]                        # webhook URLs of notify.webhooks[].secretRef
{{- end }}
{{- end -}}

{{- /*
One operator per namespace. Two releases on one namespace would both run its policies, and each
release's incident-fields policy would refuse the other's operator. Every release leaves its scope on
its admission-check ClusterRole (always rendered); an install or upgrade looks them up and refuses an
overlap, naming the other release. `helm template` cannot look up, so rendered manifests are not checked.
*/}}
{{- define "hemostat.refuseOverlap" -}}
{{- $mine := .Values.watchNamespaces -}}
{{- $self := printf "%s/%s" .Release.Namespace .Release.Name -}}
{{- $roles := lookup "rbac.authorization.k8s.io/v1" "ClusterRole" "" "" -}}
{{- range $role := ($roles.items | default list) -}}
{{- $annotations := $role.metadata.annotations | default dict -}}
{{- if hasKey $annotations "hemostat.dev/release" -}}
{{- $other := get $annotations "hemostat.dev/release" -}}
{{- if ne $other $self -}}
{{- $theirs := get $annotations "hemostat.dev/watch-namespaces" | default "" -}}
{{- $shared := "" -}}
{{- if not $theirs -}}
{{- $shared = ($mine | default (list "every namespace")) | join ", " -}}
{{- else if not $mine -}}
{{- $shared = $theirs | replace "," ", " -}}
{{- else -}}
{{- $common := list -}}
{{- range $ns := splitList "," $theirs }}{{ if has $ns $mine }}{{ $common = append $common $ns }}{{ end }}{{ end -}}
{{- $shared = $common | join ", " -}}
{{- end -}}
{{- if $shared -}}
{{- $parts := splitList "/" $other -}}
{{- fail (printf "Hemostat release %s (namespace %s) already watches %s: two operators would run the same policies and each release's admission policies would refuse the other's operator; give each release its own watchNamespaces" (index $parts 1) (index $parts 0) $shared) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

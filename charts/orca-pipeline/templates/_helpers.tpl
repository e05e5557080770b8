{{/*
The Argo objects are rendered by `orca-argo render` into files/ and included here with .Files.Get, so
their {{...}} expressions are data to Helm, never templates. This wrapper only puts the site's values
into them: image, resources, service account, pod user, roots of the Lustre mounts, Phase 1 parallelism.
*/}}

{{- define "orca.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag }}
{{- end }}

{{- define "orca.labels" -}}
app.kubernetes.io/name: orca-pipeline
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version | replace "+" "_" }}
{{- end }}

{{/*
The site in force: .Values.site, with the default node map when the site gives none. values.yaml leaves
site.node_map empty because Helm merges maps key by key: a site's own map must replace the default
whole, never add to it (a 3-subband site would otherwise get 15 subbands on nodes it does not have).
*/}}
{{- define "orca.site" -}}
{{- $site := deepCopy .Values.site -}}
{{- if not $site.node_map }}
{{- $_ := set $site "node_map" (.Files.Get "files/default-node-map.json" | fromJson) }}
{{- end }}
{{- toJson $site }}
{{- end }}

{{/* Every node of the site (node map and dynamic pool), as a JSON list. */}}
{{- define "orca.nodes" -}}
{{- $site := include "orca.site" . | fromJson -}}
{{- concat (values $site.node_map) $site.dynamic_pool | uniq | sortAlpha | toJson }}
{{- end }}

{{/* Roots must stay on the node mounts: Lustre (input, archive, runs) and NVMe. */}}
{{- define "orca.checkRoots" -}}
{{- $site := .Values.site -}}
{{- range $key := list "input_root" "archive_root" "runs_root" }}
{{- if not (hasPrefix "/lustre/" (index $site $key)) }}
{{- fail (printf "site.%s (%s) must lie under /lustre/" $key (index $site $key)) }}
{{- end }}
{{- end }}
{{- if not (hasPrefix "/fast/" $site.nvme_root) }}
{{- fail (printf "site.nvme_root (%s) must lie under /fast/" $site.nvme_root) }}
{{- end }}
{{- end }}

{{/* One rendered Argo object with the site's values put in. Args: root (.), path (files/x.yaml). */}}
{{- define "orca.argoFile" -}}
{{- $root := .root -}}
{{- include "orca.checkRoots" $root -}}
{{- $doc := $root.Files.Get .path | fromYaml -}}
{{- $rendered := $root.Files.Get "files/rendered-site.json" | fromJson -}}
{{- $site := $root.Values.site -}}
{{- $_ := set $doc.metadata "labels" (include "orca.labels" $root | fromYaml) -}}
{{- $spec := $doc.spec -}}
{{- $_ := set $spec "serviceAccountName" $root.Values.serviceAccount.name -}}
{{- $_ := set $spec.securityContext "runAsUser" $root.Values.securityContext.runAsUser -}}
{{- $_ := set $spec.securityContext "runAsGroup" $root.Values.securityContext.runAsGroup -}}
{{- range $t := $spec.templates }}
{{- if and (eq $t.name "hour") (hasKey $t "dag") }}
{{- $_ := set $t "parallelism" $site.phase1_parallelism }}
{{- end }}
{{- if and $t.container (not $t.nodeSelector) $t.volumes }}
{{- /* an unpinned pod that mounts Lustre (hostPath, type Directory) must land on a site node */}}
{{- $_ := set $t "affinity" (dict "nodeAffinity" (dict "requiredDuringSchedulingIgnoredDuringExecution" (dict "nodeSelectorTerms" (list (dict "matchExpressions" (list (dict "key" "kubernetes.io/hostname" "operator" "In" "values" (include "orca.nodes" $root | fromJsonArray)))))))) }}
{{- end }}
{{- with $t.container }}
{{- $_ := set . "image" (include "orca.image" $root) }}
{{- $_ := set . "imagePullPolicy" $root.Values.image.pullPolicy }}
{{- /* the pod's kind of resources: its label orca/resources, a key of .Values.resources */}}
{{- $_ := set . "resources" (index $root.Values.resources (dig "metadata" "labels" "orca/resources" "small" $t)) }}
{{- range $m := .volumeMounts }}
{{- range $key := list "archive_root" "runs_root" }}
{{- if eq $m.mountPath (index $rendered $key) }}
{{- $_ := set $m "mountPath" (index $site $key) }}
{{- $_ := set $m "subPath" (trimPrefix "/lustre/" (index $site $key)) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- toYaml $doc }}
{{- end }}

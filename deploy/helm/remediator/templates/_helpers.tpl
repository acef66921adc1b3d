{{/* The chart's name, or nameOverride. Also the Prometheus job name (ServiceMonitor jobLabel). */}}
{{- define "remediator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Resource names: fullnameOverride, else <release>-<name> (or <release> if it holds the name). */}}
{{- define "remediator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "remediator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "remediator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "remediator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "remediator.labels" -}}
helm.sh/chart: {{ include "remediator.chart" . }}
{{ include "remediator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "remediator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "remediator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "remediator.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{- define "remediator.stateClaimName" -}}
{{- .Values.persistence.existingClaim | default (printf "%s-state" (include "remediator.fullname" .)) }}
{{- end }}

{{/*
Refuse combinations that would break remediator's guarantees rather than render them:
several replicas need the PostgreSQL store (SQLite is one process's file), a ReadWriteOnce
volume cannot be shared by several pods, and RBAC is granted to remediator's own ServiceAccount
in at least one namespace, never to the namespace's default account.
*/}}
{{- define "remediator.validate" -}}
{{- $store := .Values.config.store | default dict }}
{{- if and (gt (int .Values.replicaCount) 1) (not (hasKey $store "postgres")) }}
{{- fail "replicaCount > 1 needs config.store.postgres: SQLite is one process's file (see values-postgres.yaml)" }}
{{- end }}
{{- if and (gt (int .Values.replicaCount) 1) .Values.persistence.enabled }}
{{- fail "replicaCount > 1 with persistence.enabled: the state volume is for one replica on SQLite; set persistence.enabled=false with the PostgreSQL store" }}
{{- end }}
{{- $pdb := .Values.podDisruptionBudget }}
{{- if and $pdb.enabled $pdb.minAvailable (not (kindIs "string" $pdb.minAvailable)) (ge (int $pdb.minAvailable) (int .Values.replicaCount)) }}
{{- fail (printf "podDisruptionBudget.minAvailable %d with replicaCount %d would block every node drain: keep it below replicaCount, or use maxUnavailable" (int $pdb.minAvailable) (int .Values.replicaCount)) }}
{{- end }}
{{- if and .Values.rbac.create (not .Values.serviceAccount.create) (not .Values.serviceAccount.name) }}
{{- fail "rbac.create binds the Role to remediator's own ServiceAccount: set serviceAccount.create=true or serviceAccount.name, never the namespace's default" }}
{{- end }}
{{- if and .Values.rbac.create (not .Values.rbac.namespaces) }}
{{- fail "rbac.create needs rbac.namespaces: the namespaces the kubernetes actions act in" }}
{{- end }}
{{- end }}

{{/*
The pod's affinity: .Values.affinity as given, else the anti-affinity podAntiAffinity names, by
node (kubernetes.io/hostname), between the pods of this release.
*/}}
{{- define "remediator.affinity" -}}
{{- if .Values.affinity }}
{{- toYaml .Values.affinity }}
{{- else if eq .Values.podAntiAffinity "soft" }}
podAntiAffinity:
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- include "remediator.selectorLabels" . | nindent 12 }}
{{- else if eq .Values.podAntiAffinity "hard" }}
podAntiAffinity:
  requiredDuringSchedulingIgnoredDuringExecution:
    - topologyKey: kubernetes.io/hostname
      labelSelector:
        matchLabels:
          {{- include "remediator.selectorLabels" . | nindent 10 }}
{{- end }}
{{- end }}

{{- define "graylens.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "graylens.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "graylens.labels" -}}
{{ include "graylens.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "graylens.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "graylens.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* HTTP or HTTPS, for probes and the ServiceMonitor. */}}
{{- define "graylens.scheme" -}}
{{- if .Values.tls.secretName -}}HTTPS{{- else -}}HTTP{{- end -}}
{{- end -}}

{{/* Refuses values graylens would refuse at start, with the fix. */}}
{{- define "graylens.validate" -}}
{{- if and (not .Values.auth.tokens) (not .Values.auth.allowUnauthenticated) -}}
{{- fail "graylens: pods listen beyond loopback, so set auth.tokens (README, \"Securing graylens\") or auth.allowUnauthenticated=true" -}}
{{- end -}}
{{- range .Values.auth.tokens -}}
{{- if or (not .name) (not .secretName) (not .secretKey) (not .scopes) -}}
{{- fail "graylens: every auth.tokens entry needs name, secretName, secretKey and scopes" -}}
{{- end -}}
{{- if not (regexMatch "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$" .name) -}}
{{- fail (printf "graylens: auth.tokens name %q must be a DNS label (it names a volume)" .name) -}}
{{- end -}}
{{- end -}}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.storage.url) -}}
{{- fail "graylens: replicaCount > 1 needs storage.url: nodes share their data through an object store (README, \"Running a cluster\")" -}}
{{- end -}}
{{- if and .Values.storage.url (not (hasPrefix "s3://" .Values.storage.url)) -}}
{{- fail "graylens: storage.url must be s3://bucket/prefix" -}}
{{- end -}}
{{- if and .Values.tls.clientCASecretName (not .Values.tls.secretName) -}}
{{- fail "graylens: tls.clientCASecretName needs tls.secretName" -}}
{{- end -}}
{{- if regexMatch "(?m)^\\s*\\[\\s*(auth|tls)\\s*\\]" .Values.config -}}
{{- fail "graylens: config must not contain [auth] or [tls]: set them through auth and tls values" -}}
{{- end -}}
{{- end -}}

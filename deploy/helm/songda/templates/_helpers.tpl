{{/* Names, labels and the shared pieces of every Songda pod. */}}

{{- define "songda.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "songda.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Labels of the whole release. */}}
{{- define "songda.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "songda.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: songda
{{- end }}

{{/* Selector of one component: call with (dict "root" $ "name" "order"). */}}
{{- define "songda.selectorLabels" -}}
app.kubernetes.io/name: {{ include "songda.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .name }}
{{- end }}

{{- define "songda.componentLabels" -}}
{{ include "songda.labels" .root }}
app.kubernetes.io/component: {{ .name }}
{{- end }}

{{- define "songda.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}
{{- end }}

{{- define "songda.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "songda.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The env prefix of a component's settings: ORDER_, GATEWAY_, … */}}
{{- define "songda.prefix" -}}
{{ upper . }}_
{{- end }}

{{/* The in-cluster URL of a component. */}}
{{- define "songda.url" -}}
http://{{ include "songda.fullname" .root }}-{{ .name }}:{{ .root.Values.service.port }}
{{- end }}

{{/*
The non-secret env of a component as a YAML map: what the chart wires (upstream URLs, Kafka), then the service's
own `env`, which wins. Rendered into the ConfigMap and, inline, into hook Jobs (which run before the ConfigMap exists).
*/}}
{{- define "songda.env" -}}
{{- $root := .root }}
{{- $name := .name }}
{{- $svc := index $root.Values.services $name }}
{{- $prefix := include "songda.prefix" $name }}
{{- $env := dict }}
{{- if eq $name "gateway" }}
{{- range $upstream, $other := $root.Values.services }}
{{- if and (ne $upstream "gateway") $other.enabled }}
{{- $_ := set $env (printf "GATEWAY_%s_URL" (upper $upstream)) (include "songda.url" (dict "root" $root "name" $upstream)) }}
{{- end }}
{{- end }}
{{- else }}
{{- $_ := set $env (printf "%sKAFKA_BOOTSTRAP_SERVERS" $prefix) $root.Values.kafka.bootstrapServers }}
{{- $_ := set $env (printf "%sKAFKA_ENABLE_IDEMPOTENCE" $prefix) (toString $root.Values.kafka.enableIdempotence) }}
{{- $env = merge $env (include "songda.kafkaSecurityEnv" (dict "root" $root "prefix" $prefix) | fromYaml) }}
{{- end }}
{{- with $root.Values.tracing.otlpEndpoint }}
{{- $_ := set $env "OTEL_EXPORTER_OTLP_ENDPOINT" . }}
{{- end }}
{{- if eq $name "dispatch" }}
{{- $_ := set $env "DISPATCH_REDEMPTION_URL" (include "songda.url" (dict "root" $root "name" "redemption")) }}
{{- end }}
{{- range $key, $value := $svc.env }}
{{- $_ := set $env $key (toString $value) }}
{{- end }}
{{- toYaml $env }}
{{- end }}

{{/* The Secret a component reads its secret env from, or nothing. */}}
{{- define "songda.secretName" -}}
{{- $svc := index .root.Values.services .name }}
{{- if $svc.existingSecret }}
{{- $svc.existingSecret }}
{{- else if $svc.secretEnv }}
{{- include "songda.fullname" .root }}-{{ .name }}
{{- end }}
{{- end }}

{{- define "songda.podSecurityContext" -}}
{{ toYaml .Values.podSecurityContext }}
{{- end }}

{{- define "songda.containerSecurityContext" -}}
{{ toYaml .Values.containerSecurityContext }}
{{- end }}

{{/* Hook annotations of the Jobs that must run before pods start (migrations, topics). */}}
{{- define "songda.hookAnnotations" -}}
helm.sh/hook: pre-install,pre-upgrade
helm.sh/hook-weight: {{ .weight | quote }}
helm.sh/hook-delete-policy: before-hook-creation,hook-succeeded
{{- end }}

{{/* Kafka's SASL mechanism and TLS files as <prefix>KAFKA_* variables (shared/events/kafka_security.py). */}}
{{- define "songda.kafkaSecurityEnv" -}}
{{- $kafka := .root.Values.kafka }}
{{- $env := dict (printf "%sKAFKA_SECURITY_PROTOCOL" .prefix) $kafka.securityProtocol }}
{{- if hasPrefix "SASL_" $kafka.securityProtocol }}
{{- $_ := set $env (printf "%sKAFKA_SASL_MECHANISM" .prefix) $kafka.saslMechanism }}
{{- end }}
{{- if $kafka.tlsSecret }}
{{- $_ := set $env (printf "%sKAFKA_SSL_CAFILE" .prefix) "/etc/songda/kafka-tls/ca.crt" }}
{{- if $kafka.clientCertificate }}
{{- $_ := set $env (printf "%sKAFKA_SSL_CERTFILE" .prefix) "/etc/songda/kafka-tls/tls.crt" }}
{{- $_ := set $env (printf "%sKAFKA_SSL_KEYFILE" .prefix) "/etc/songda/kafka-tls/tls.key" }}
{{- end }}
{{- end }}
{{- toYaml $env }}
{{- end }}

{{/* The mounts of the Kafka and PostgreSQL TLS Secrets, and their volumes (next to /tmp's), for the pods that
talk to them: (dict "root" $ "kafka" bool "postgres" bool). */}}
{{- define "songda.tlsMounts" -}}
{{- if and .kafka .root.Values.kafka.tlsSecret }}
- name: kafka-tls
  mountPath: /etc/songda/kafka-tls
  readOnly: true
{{- end }}
{{- if and .postgres .root.Values.postgres.tlsSecret }}
- name: postgres-tls
  mountPath: /etc/songda/postgres-tls
  readOnly: true
{{- end }}
{{- end }}

{{- define "songda.tlsVolumes" -}}
{{- if and .kafka .root.Values.kafka.tlsSecret }}
- name: kafka-tls
  secret:
    secretName: {{ .root.Values.kafka.tlsSecret }}
    defaultMode: 0440
{{- end }}
{{- if and .postgres .root.Values.postgres.tlsSecret }}
- name: postgres-tls
  secret:
    secretName: {{ .root.Values.postgres.tlsSecret }}
    defaultMode: 0440
{{- end }}
{{- end }}

{{/*
Names, labels and the pieces every workload shares. The four roles (ingest, api, processor,
dispatcher) render their pod templates through "erp-toolkit.podTemplate" so that probes, security
contexts, secrets and Kafka settings are written once.
*/}}

{{- define "erp-toolkit.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "erp-toolkit.fullname" -}}
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

{{/* The name of one role's objects: <fullname>-<role>. Args: root, role. */}}
{{- define "erp-toolkit.roleName" -}}
{{- printf "%s-%s" (include "erp-toolkit.fullname" .root | trunc 52 | trimSuffix "-") .role }}
{{- end }}

{{- define "erp-toolkit.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "erp-toolkit.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: erp-toolkit
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Labels of one role's objects. Args: root, role. */}}
{{- define "erp-toolkit.roleLabels" -}}
{{ include "erp-toolkit.labels" .root }}
app.kubernetes.io/component: {{ .role }}
{{- end }}

{{/* Selector labels of one role (never change them: selectors are immutable). Args: root, role. */}}
{{- define "erp-toolkit.selectorLabels" -}}
app.kubernetes.io/name: {{ include "erp-toolkit.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .role }}
{{- end }}

{{- define "erp-toolkit.image" -}}
{{- $image := .Values.image }}
{{- if $image.digest }}
{{- printf "%s@%s" $image.repository $image.digest }}
{{- else }}
{{- printf "%s:%s" $image.repository ($image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{- define "erp-toolkit.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "erp-toolkit.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Secret that holds the admin token: the given one, or <fullname>-admin by convention. */}}
{{- define "erp-toolkit.adminTokenSecret" -}}
{{- .Values.adminToken.existingSecret | default (printf "%s-admin" (include "erp-toolkit.fullname" .)) }}
{{- end }}

{{/*
A value as the role's environment needs it: Helm reads every YAML number as a float, which would
print 10485760 as 1.048576e+07.
*/}}
{{- define "erp-toolkit.scalar" -}}
{{- if kindIs "float64" . }}
{{- if eq (float64 (int64 .)) . }}{{ int64 . }}{{ else }}{{ . }}{{ end }}
{{- else }}
{{- . }}
{{- end }}
{{- end }}

{{/* Which secrets and state each role takes. Args: root, role. */}}
{{- define "erp-toolkit.takesAdminToken" -}}
{{- if has .role (list "ingest" "api") }}true{{ end }}
{{- end }}
{{- define "erp-toolkit.takesKeys" -}}
{{- if has .role (list "api" "dispatcher") }}true{{ end }}
{{- end }}
{{- define "erp-toolkit.hasDataDir" -}}
{{- if has .role (list "api" "processor") }}true{{ end }}
{{- end }}
{{- define "erp-toolkit.servesHttp" -}}
{{- if has .role (list "ingest" "api") }}true{{ end }}
{{- end }}
{{- define "erp-toolkit.staticMembership" -}}
{{- $values := index .root.Values .role }}
{{- if and (has .role (list "processor" "dispatcher")) $values.staticMembership }}true{{ end }}
{{- end }}

{{/*
Settings the chart itself derives; a role's `config` may not set them (the schema refuses them
too, this guards `--skip-schema-validation`).
*/}}
{{- define "erp-toolkit.reservedSettings" -}}
{{- list "ERP_TOOLKIT_BROKERS" "ERP_TOOLKIT_TOPIC_PREFIX" "ERP_TOOLKIT_PARTITIONS" "ERP_TOOLKIT_REPLICATION_FACTOR" "ERP_TOOLKIT_KAFKA_OPTIONS" "ERP_TOOLKIT_LISTEN" "ERP_TOOLKIT_METRICS_LISTEN" "ERP_TOOLKIT_DATA_DIR" "ERP_TOOLKIT_ADMIN_TOKEN" "ERP_TOOLKIT_SECRETS_KEY_FILE" "ERP_TOOLKIT_SIGNING_KEY_FILE" "ERP_TOOLKIT_GROUP_INSTANCE_ID" "ERP_TOOLKIT_POLL_QUEUE" "ERP_TOOLKIT_LOG_FORMAT" "ERP_TOOLKIT_LOG" "ERP_TOOLKIT_SCHEMA_REGISTRY_PASSWORD" "ERP_TOOLKIT_SCHEMA_REGISTRY_TOKEN" | toJson }}
{{- end }}

{{/*
The role's non-secret settings as ERP_TOOLKIT_* variables: the data of its ConfigMap, and the
input of the checksum that rolls its pods when it changes. Args: root, role.
*/}}
{{- define "erp-toolkit.configData" -}}
{{- $root := .root }}
{{- $values := index $root.Values .role }}
{{- $data := dict }}
{{- $_ := set $data "ERP_TOOLKIT_BROKERS" (required "kafka.brokers is required" $root.Values.kafka.brokers) }}
{{- $_ := set $data "ERP_TOOLKIT_TOPIC_PREFIX" $root.Values.kafka.topicPrefix }}
{{- $_ := set $data "ERP_TOOLKIT_PARTITIONS" (include "erp-toolkit.scalar" $root.Values.kafka.partitions) }}
{{- $_ := set $data "ERP_TOOLKIT_REPLICATION_FACTOR" (include "erp-toolkit.scalar" $root.Values.kafka.replicationFactor) }}
{{- $_ := set $data "ERP_TOOLKIT_LOG_FORMAT" $root.Values.log.format }}
{{- $_ := set $data "ERP_TOOLKIT_LOG" $root.Values.log.filter }}
{{- if include "erp-toolkit.servesHttp" . }}
{{- $_ := set $data "ERP_TOOLKIT_LISTEN" "0.0.0.0:8080" }}
{{- $_ := set $data "ERP_TOOLKIT_METRICS_LISTEN" "0.0.0.0:9090" }}
{{- else }}
{{- $_ := set $data "ERP_TOOLKIT_LISTEN" "0.0.0.0:9090" }}
{{- end }}
{{- if include "erp-toolkit.hasDataDir" . }}
{{- $_ := set $data "ERP_TOOLKIT_DATA_DIR" "/var/lib/erp-toolkit" }}
{{- end }}
{{- if include "erp-toolkit.takesKeys" . }}
{{- if $root.Values.secretsKey.existingSecret }}
{{- $_ := set $data "ERP_TOOLKIT_SECRETS_KEY_FILE" "/etc/erp-toolkit/secrets-key/secrets-key" }}
{{- end }}
{{- if $root.Values.signingKey.existingSecret }}
{{- $_ := set $data "ERP_TOOLKIT_SIGNING_KEY_FILE" "/etc/erp-toolkit/signing-key/signing-key.pem" }}
{{- end }}
{{- end }}
{{- if eq .role "api" }}
{{- $_ := set $data "ERP_TOOLKIT_POLL_QUEUE" (ternary "true" "false" $values.pollQueue) }}
{{- end }}
{{- $reserved := include "erp-toolkit.reservedSettings" . | fromJsonArray }}
{{- range $key, $value := $values.config }}
{{- if has $key $reserved }}
{{- fail (printf "%s.config.%s is set by the chart; use the chart's own value for it" $.role $key) }}
{{- end }}
{{- $_ := set $data $key (include "erp-toolkit.scalar" $value) }}
{{- end }}
{{- range $key := keys $data | sortAlpha }}
{{ $key }}: {{ index $data $key | quote }}
{{- end }}
{{- end }}

{{/*
librdkafka properties for ERP_TOOLKIT_KAFKA_OPTIONS (`key=value,…`; later ones win). Secret values
are `$(VAR)` references to variables filled from Secrets, which Kubernetes expands in the
container: the values themselves never appear in a manifest. Args: root, role.
*/}}
{{- define "erp-toolkit.kafkaOptions" -}}
{{- $kafka := .root.Values.kafka }}
{{- $values := index .root.Values .role }}
{{- $options := list }}
{{- if and $kafka.sasl.enabled $kafka.tls.enabled }}
{{- $options = append $options "security.protocol=SASL_SSL" }}
{{- else if $kafka.sasl.enabled }}
{{- $options = append $options "security.protocol=SASL_PLAINTEXT" }}
{{- else if $kafka.tls.enabled }}
{{- $options = append $options "security.protocol=SSL" }}
{{- end }}
{{- if $kafka.sasl.enabled }}
{{- $options = append $options (printf "sasl.mechanism=%s" $kafka.sasl.mechanism) }}
{{- $options = append $options "sasl.username=$(KAFKA_SASL_USERNAME)" }}
{{- $options = append $options "sasl.password=$(KAFKA_SASL_PASSWORD)" }}
{{- end }}
{{- if and $kafka.tls.enabled $kafka.tls.existingSecret }}
{{- if $kafka.tls.caKey }}
{{- $options = append $options (printf "ssl.ca.location=/etc/erp-toolkit/kafka-tls/%s" $kafka.tls.caKey) }}
{{- end }}
{{- if $kafka.tls.certKey }}
{{- $options = append $options (printf "ssl.certificate.location=/etc/erp-toolkit/kafka-tls/%s" $kafka.tls.certKey) }}
{{- $options = append $options (printf "ssl.key.location=/etc/erp-toolkit/kafka-tls/%s" $kafka.tls.keyKey) }}
{{- end }}
{{- end }}
{{- range $key := keys $kafka.options | sortAlpha }}
{{- $options = append $options (printf "%s=%s" $key (include "erp-toolkit.scalar" (index $kafka.options $key))) }}
{{- end }}
{{- range $key := keys ($values.kafkaOptions | default dict) | sortAlpha }}
{{- $options = append $options (printf "%s=%s" $key (include "erp-toolkit.scalar" (index $values.kafkaOptions $key))) }}
{{- end }}
{{- if $kafka.optionsSecret.name }}
{{- $options = append $options "$(KAFKA_SECRET_OPTIONS)" }}
{{- end }}
{{- join "," $options }}
{{- end }}

{{/* The container's environment beyond its ConfigMap. Args: root, role. */}}
{{- define "erp-toolkit.env" -}}
{{- $root := .root }}
{{- $kafka := $root.Values.kafka }}
{{- $values := index $root.Values .role }}
{{- if include "erp-toolkit.takesAdminToken" . }}
- name: ERP_TOOLKIT_ADMIN_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "erp-toolkit.adminTokenSecret" $root }}
      key: {{ $root.Values.adminToken.key }}
{{- end }}
{{- if $kafka.sasl.enabled }}
- name: KAFKA_SASL_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ required "kafka.sasl.existingSecret is required with kafka.sasl.enabled" $kafka.sasl.existingSecret }}
      key: {{ $kafka.sasl.usernameKey }}
- name: KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $kafka.sasl.existingSecret }}
      key: {{ $kafka.sasl.passwordKey }}
{{- end }}
{{- with $root.Values.schemaRegistry.existingSecret }}
{{- if $root.Values.schemaRegistry.passwordKey }}
- name: ERP_TOOLKIT_SCHEMA_REGISTRY_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $root.Values.schemaRegistry.passwordKey }}
{{- end }}
{{- if $root.Values.schemaRegistry.tokenKey }}
- name: ERP_TOOLKIT_SCHEMA_REGISTRY_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $root.Values.schemaRegistry.tokenKey }}
{{- end }}
{{- end }}
{{- if $kafka.optionsSecret.name }}
- name: KAFKA_SECRET_OPTIONS
  valueFrom:
    secretKeyRef:
      name: {{ $kafka.optionsSecret.name }}
      key: {{ required "kafka.optionsSecret.key is required with kafka.optionsSecret.name" $kafka.optionsSecret.key }}
{{- end }}
{{- with include "erp-toolkit.kafkaOptions" . }}
- name: ERP_TOOLKIT_KAFKA_OPTIONS
  value: {{ . | quote }}
{{- end }}
{{- if include "erp-toolkit.staticMembership" . }}
# Static group membership: a restarted pod keeps its name, so it rejoins as the same member and
# gets its partitions back without a rebalance of the whole group.
- name: ERP_TOOLKIT_GROUP_INSTANCE_ID
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
{{- end }}
{{- with $values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The pod's volumes (the data volume of a StatefulSet comes from its claim template). Args: root, role, dataVolume (a volume source, optional). */}}
{{- define "erp-toolkit.volumes" -}}
{{- $root := .root }}
{{- $values := index $root.Values .role }}
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
{{- with .dataVolume }}
- name: data
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if include "erp-toolkit.takesKeys" . }}
{{- with $root.Values.secretsKey.existingSecret }}
- name: secrets-key
  secret:
    secretName: {{ . }}
    defaultMode: 0440
    items:
      - key: {{ $root.Values.secretsKey.key }}
        path: secrets-key
{{- end }}
{{- with $root.Values.signingKey.existingSecret }}
- name: signing-key
  secret:
    secretName: {{ . }}
    defaultMode: 0440
    items:
      - key: {{ $root.Values.signingKey.key }}
        path: signing-key.pem
{{- end }}
{{- end }}
{{- if and $root.Values.kafka.tls.enabled $root.Values.kafka.tls.existingSecret }}
- name: kafka-tls
  secret:
    secretName: {{ $root.Values.kafka.tls.existingSecret }}
    defaultMode: 0440
{{- end }}
{{- with $values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Args: root, role. */}}
{{- define "erp-toolkit.volumeMounts" -}}
{{- $root := .root }}
{{- $values := index $root.Values .role }}
- name: tmp
  mountPath: /tmp
{{- if include "erp-toolkit.hasDataDir" . }}
- name: data
  mountPath: /var/lib/erp-toolkit
{{- end }}
{{- if include "erp-toolkit.takesKeys" . }}
{{- if $root.Values.secretsKey.existingSecret }}
- name: secrets-key
  mountPath: /etc/erp-toolkit/secrets-key
  readOnly: true
{{- end }}
{{- if $root.Values.signingKey.existingSecret }}
- name: signing-key
  mountPath: /etc/erp-toolkit/signing-key
  readOnly: true
{{- end }}
{{- end }}
{{- if and $root.Values.kafka.tls.enabled $root.Values.kafka.tls.existingSecret }}
- name: kafka-tls
  mountPath: /etc/erp-toolkit/kafka-tls
  readOnly: true
{{- end }}
{{- with $values.extraVolumeMounts }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Soft spreading over zones and nodes unless the role sets its own constraints. Args: root, role.
*/}}
{{- define "erp-toolkit.topologySpread" -}}
{{- $values := index .root.Values .role }}
{{- if $values.topologySpreadConstraints }}
{{- toYaml $values.topologySpreadConstraints }}
{{- else if .root.Values.defaultTopologySpread }}
{{- range $key := list "topology.kubernetes.io/zone" "kubernetes.io/hostname" }}
- topologyKey: {{ $key }}
  maxSkew: 1
  whenUnsatisfiable: ScheduleAnyway
  labelSelector:
    matchLabels:
      {{- include "erp-toolkit.selectorLabels" $ | nindent 6 }}
  {{- if has $.role (list "ingest" "dispatcher") }}
  # Spread each rollout's new pods on their own, not against the pods they replace.
  matchLabelKeys: [pod-template-hash]
  {{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The pod template of a role. Args: root, role, dataVolume (optional volume source for "data").
*/}}
{{- define "erp-toolkit.podTemplate" -}}
{{- $root := .root }}
{{- $values := index $root.Values .role }}
metadata:
  labels:
    {{- include "erp-toolkit.roleLabels" . | nindent 4 }}
    {{- with $values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    checksum/config: {{ include "erp-toolkit.configData" . | sha256sum }}
    {{- with $root.Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
    {{- with $values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "erp-toolkit.serviceAccountName" $root }}
  automountServiceAccountToken: {{ $root.Values.serviceAccount.automountServiceAccountToken }}
  enableServiceLinks: false
  {{- with $root.Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $root.Values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  terminationGracePeriodSeconds: {{ $values.terminationGracePeriodSeconds }}
  securityContext:
    {{- toYaml $root.Values.podSecurityContext | nindent 4 }}
  containers:
    - name: {{ .role }}
      image: {{ include "erp-toolkit.image" $root }}
      imagePullPolicy: {{ $root.Values.image.pullPolicy }}
      args: [{{ .role | quote }}]
      envFrom:
        - configMapRef:
            name: {{ include "erp-toolkit.roleName" . }}
        {{- with $values.extraEnvFrom }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- with include "erp-toolkit.env" . | trim }}
      env:
        {{- . | nindent 8 }}
      {{- end }}
      ports:
        {{- if include "erp-toolkit.servesHttp" . }}
        - name: http
          containerPort: 8080
          protocol: TCP
        {{- end }}
        - name: metrics
          containerPort: 9090
          protocol: TCP
      {{- $probePort := ternary "http" "metrics" (eq (include "erp-toolkit.servesHttp" .) "true") }}
      startupProbe:
        httpGet:
          path: /healthz
          port: {{ $probePort }}
        {{- toYaml $values.startupProbe | nindent 8 }}
      livenessProbe:
        httpGet:
          path: /healthz
          port: {{ $probePort }}
        {{- toYaml $values.livenessProbe | nindent 8 }}
      readinessProbe:
        httpGet:
          path: /readyz
          port: {{ $probePort }}
        {{- toYaml $values.readinessProbe | nindent 8 }}
      {{- with $values.lifecycle }}
      lifecycle:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      resources:
        {{- toYaml $values.resources | nindent 8 }}
      securityContext:
        {{- toYaml $root.Values.securityContext | nindent 8 }}
      volumeMounts:
        {{- include "erp-toolkit.volumeMounts" . | trim | nindent 8 }}
  volumes:
    {{- include "erp-toolkit.volumes" . | trim | nindent 4 }}
  {{- with $values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with include "erp-toolkit.topologySpread" . | trim }}
  topologySpreadConstraints:
    {{- . | nindent 4 }}
  {{- end }}
{{- end }}

{{/* A PodDisruptionBudget for a role. Args: root, role. */}}
{{- define "erp-toolkit.pdb" -}}
{{- $values := index .root.Values .role }}
{{- if and $values.enabled $values.podDisruptionBudget.enabled }}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "erp-toolkit.roleName" . }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "erp-toolkit.roleLabels" . | nindent 4 }}
spec:
  {{- if hasKey $values.podDisruptionBudget "minAvailable" }}
  minAvailable: {{ $values.podDisruptionBudget.minAvailable }}
  {{- else }}
  maxUnavailable: {{ $values.podDisruptionBudget.maxUnavailable }}
  {{- end }}
  # A pod that is not ready (crash-looping, stuck restoring) may always be evicted, so it never
  # blocks a node drain.
  unhealthyPodEvictionPolicy: AlwaysAllow
  selector:
    matchLabels:
      {{- include "erp-toolkit.selectorLabels" . | nindent 6 }}
{{- end }}
{{- end }}

{{/* The role's ConfigMap. Args: root, role. */}}
{{- define "erp-toolkit.configMap" -}}
{{- $values := index .root.Values .role }}
{{- if $values.enabled }}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ include "erp-toolkit.roleName" . }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "erp-toolkit.roleLabels" . | nindent 4 }}
data:
  {{- include "erp-toolkit.configData" . | trim | nindent 2 }}
{{- end }}
{{- end }}

{{/* A claim template or PVC spec from a persistence block. */}}
{{- define "erp-toolkit.claimSpec" -}}
accessModes:
  {{- toYaml .accessModes | nindent 2 }}
{{- with .storageClassName }}
storageClassName: {{ if eq . "-" }}""{{ else }}{{ . }}{{ end }}
{{- end }}
resources:
  requests:
    storage: {{ .size }}
{{- end }}

{{/*
Whether the cluster serves an API group version (offline: `helm template --api-versions`). Args:
root, api.
*/}}
{{- define "erp-toolkit.hasApi" -}}
{{- if .root.Capabilities.APIVersions.Has .api }}true{{ end }}
{{- end }}

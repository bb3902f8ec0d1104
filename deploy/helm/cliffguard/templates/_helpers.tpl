{{- define "cliffguard.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* metadata labels of a component's resources: (list $ "gateway") */}}
{{- define "cliffguard.labels" -}}
{{ include "cliffguard.selector" . }}
app.kubernetes.io/part-of: cliffguard
app.kubernetes.io/managed-by: {{ (index . 0).Release.Service }}
app.kubernetes.io/version: {{ (index . 0).Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" (index . 0).Chart.Name (index . 0).Chart.Version }}
{{- end -}}

{{/* selector labels of one component: (list $ "gateway") */}}
{{- define "cliffguard.selector" -}}
app.kubernetes.io/name: cliffguard-{{ index . 1 }}
app.kubernetes.io/instance: {{ (index . 0).Release.Name }}
{{- end -}}

{{- define "cliffguard.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "cliffguard.tokensSecret" -}}
{{ .Values.auth.existingSecret | default (printf "%s-tokens" (include "cliffguard.fullname" .)) }}
{{- end -}}

{{/* what every process needs: the config and, with an external Redis, its URL */}}
{{- define "cliffguard.redisEnv" -}}
{{- if not .Values.redis.internal.enabled -}}
- name: CLIFFGUARD_REDIS_URL
  valueFrom: {secretKeyRef: {name: {{ required "redis.external.existingSecret is required when redis.internal.enabled is false" .Values.redis.external.existingSecret }}, key: {{ .Values.redis.external.key }}}}
{{- end }}
{{- end -}}

{{- define "cliffguard.podSecurity" -}}
securityContext: {runAsNonRoot: true, runAsUser: 10001, fsGroup: 10001}
{{- with .Values.imagePullSecrets }}
imagePullSecrets: {{ toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{- define "cliffguard.containerSecurity" -}}
securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}
{{- end -}}

{{- define "cliffguard.configVolume" -}}
volumes: [{name: config, configMap: {name: {{ include "cliffguard.fullname" . }}-config}}]
{{- end -}}

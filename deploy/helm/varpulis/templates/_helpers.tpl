{{/* Chart name. */}}
{{- define "varpulis.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Release-qualified base name. */}}
{{- define "varpulis.fullname" -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels on every object. */}}
{{- define "varpulis.labels" -}}
app.kubernetes.io/name: {{ include "varpulis.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Selector labels of the coordinators. */}}
{{- define "varpulis.coordinatorSelector" -}}
app.kubernetes.io/name: {{ include "varpulis.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: coordinator
{{- end -}}

{{/* Selector labels of the workers. */}}
{{- define "varpulis.workerSelector" -}}
app.kubernetes.io/name: {{ include "varpulis.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: worker
{{- end -}}

{{/* Image reference. */}}
{{- define "varpulis.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{/* Name of the Secret holding the keys. */}}
{{- define "varpulis.secretName" -}}
{{- .Values.auth.existingSecret | default (printf "%s-auth" (include "varpulis.fullname" .)) -}}
{{- end -}}

{{/* Headless service of the coordinators (stable DNS names for the Raft peers). */}}
{{- define "varpulis.coordinatorHeadless" -}}
{{- printf "%s-coordinator-headless" (include "varpulis.fullname" .) -}}
{{- end -}}

{{/* URL scheme of every coordinator and worker: https when tls.enabled. */}}
{{- define "varpulis.scheme" -}}
{{- if .Values.tls.enabled -}}https{{- else -}}http{{- end -}}
{{- end -}}

{{/* Comma-separated peer URLs: pod ordinal i is Raft node id i+1. */}}
{{- define "varpulis.peers" -}}
{{- $full := include "varpulis.fullname" . -}}
{{- $headless := include "varpulis.coordinatorHeadless" . -}}
{{- $port := int .Values.coordinator.port -}}
{{- $ns := .Release.Namespace -}}
{{- $scheme := include "varpulis.scheme" . -}}
{{- $peers := list -}}
{{- range $i := until (int .Values.coordinator.founders) -}}
{{- $peers = append $peers (printf "%s://%s-coordinator-%d.%s.%s.svc.cluster.local:%d" $scheme $full $i $headless $ns $port) -}}
{{- end -}}
{{- join "," $peers -}}
{{- end -}}

{{/* MQTT broker URL for routes: mqtt.url, else the release's broker when mqtt.enabled, else empty. */}}
{{- define "varpulis.mqttUrl" -}}
{{- if .Values.mqtt.url -}}
{{- .Values.mqtt.url -}}
{{- else if .Values.mqtt.enabled -}}
{{- printf "mqtt://%s-mqtt.%s.svc.cluster.local:%d" (include "varpulis.fullname" .) .Release.Namespace (int .Values.mqtt.port) -}}
{{- end -}}
{{- end -}}

{{/* Selector labels of the MQTT broker. */}}
{{- define "varpulis.mqttSelector" -}}
app.kubernetes.io/name: {{ include "varpulis.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: mqtt
{{- end -}}

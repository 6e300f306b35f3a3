{{- define "chaoslab.labels" -}}
app.kubernetes.io/name: chaoslab
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/part-of: chaoslab
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}

{{- define "chaoslab.selector" -}}
app.kubernetes.io/name: chaoslab
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "chaoslab.image" -}}
{{ .image.repository }}:{{ .image.tag | default .root.Chart.AppVersion }}
{{- end -}}

{{- define "chaoslab.operatorName" -}}{{ .Release.Name }}-operator{{- end -}}
{{- define "chaoslab.backendName" -}}{{ .Release.Name }}-backend{{- end -}}
{{- define "chaoslab.loadgenName" -}}{{ .Release.Name }}-loadgen{{- end -}}

{{/*
The bundled Prometheus server's URL. Grafana's datasource renders it inside the grafana
subchart, so it is derived from the release alone, by the prometheus chart's own naming rule.
*/}}
{{- define "chaoslab.prometheusUrl" -}}
{{- $server := ternary (printf "%s-server" .Release.Name) (printf "%s-prometheus-server" .Release.Name) (contains "prometheus" .Release.Name) -}}
http://{{ $server | trunc 63 | trimSuffix "-" }}.{{ .Release.Namespace }}.svc
{{- end -}}

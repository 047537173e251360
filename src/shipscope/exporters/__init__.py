"""Outputs for the monitoring stack a team already runs: Prometheus exposition, Pushgateway pushes, OpenTelemetry
traces, generated Grafana dashboards and Prometheus rules. Each module reads the metric functions or canonical
events and knows nothing of the web layer."""

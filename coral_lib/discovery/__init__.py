"""Sources of service candidates: Kubernetes pods, /proc of a shared PID namespace, host sockets."""

"""The colony: registry, routing, RBAC, rate limits, audit and the gRPC server."""

"""The mutating admission webhook: a pure inject() and the HTTPS server around it."""

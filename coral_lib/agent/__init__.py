"""The agent: discovery loop, registration with the colony, operation handlers."""

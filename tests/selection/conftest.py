"""Fixtures for selection tests: discovery filter settings built from config keys."""

from __future__ import annotations

from coral_lib import config


def filters(**keys: object) -> config.KubernetesDiscovery:
    """KubernetesDiscovery from camelCase keys as written in the config file."""
    return config.KubernetesDiscovery.model_validate(keys)

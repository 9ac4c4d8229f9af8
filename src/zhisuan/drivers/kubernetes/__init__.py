"""The Kubernetes driver: placed jobs → batch/v1 Jobs (indexed for gangs) through the official client.

``manifests`` (pure translate), ``parse`` (pure parse of API JSON), ``driver`` (the API calls).
Not tested against a live cluster here: see ``driver``'s docstring for what is tested and how.
"""

from zhisuan.drivers.kubernetes.driver import KubernetesDriver
from zhisuan.drivers.kubernetes.manifests import ManifestError, build_manifests, namespace_for
from zhisuan.drivers.kubernetes.parse import parse_job_state, parse_nodes

__all__ = ["KubernetesDriver", "ManifestError", "build_manifests", "namespace_for", "parse_job_state",
           "parse_nodes"]

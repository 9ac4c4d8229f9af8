"""Model-service replicas run by the node agent (``host.ReplicaHost``) and synced with the control
plane (``sync.ReplicaSync``)."""

from zhisuan.agent.replicas.host import ReplicaHost
from zhisuan.agent.replicas.sync import ReplicaSync, replica_sync

__all__ = ["ReplicaHost", "ReplicaSync", "replica_sync"]

"""Container metrics."""

from prometheus_client import Counter

OOM_KILLS = Counter("tether_containers_oom", "Containers killed by the OOM killer.")

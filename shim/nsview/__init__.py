"""``tether ns``: a pod-aware lsns. The daemon's state (over the CRI socket, or the store when
the daemon is down) plus ``/proc/<pid>/ns/*`` become a pure report (``model``): each pod's and
container's namespaces, whose they are, who else shares them, and the risky combinations."""

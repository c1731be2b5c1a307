"""Resource usage for the CRI stats calls: cgroup v1/v2 readers (``cgroup``), per-sample CPU
rates (``rates``), a pod network namespace's interface counters (``network``) and the cached
size of a container's writable layer (``layer``). ``collector`` turns them into CRI messages.

Everything here is cheap by design: the kubelet polls every pod every ~10 s. A sample reads a
handful of small cgroup files and one ``/proc/thread-self/net/dev``; no subprocess is started;
only the writable-layer walk costs more, and it is cached per container.
"""

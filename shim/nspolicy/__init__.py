"""The namespace-sharing policy (``[namespaces]``): rules that allow, deny or audit each
kind of sharing, and the audit trail of every decision (docs/namespaces.md).

``rules``: the pure matching; ``audit``: the JSON-lines log and its writer thread;
``policy``: what the RPC edge calls.
"""

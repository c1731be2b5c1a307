"""The OCI side of containers: CRI config -> OCI runtime spec (pure), and the runtime adapters
(conmon + runc/crun)."""

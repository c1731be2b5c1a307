"""Containers: the manager of their life, ExecSync, and CRI log helpers."""

"""Crash-safe metadata store (SQLite, WAL) with typed repositories and an in-memory index."""

from shim.store.records import ContainerRecord, ImageRecord, SandboxRecord
from shim.store.repository import Repository, Store

__all__ = ["ContainerRecord", "ImageRecord", "Repository", "SandboxRecord", "Store"]

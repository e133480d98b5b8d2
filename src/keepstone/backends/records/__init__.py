"""The domain ports implemented once, above any :class:`~keepstone.ports.engine.RecordEngine`."""

from keepstone.backends.records.backend import RecordBackend

__all__ = ["RecordBackend"]

"""The domain ports implemented once, above any :class:`~keepstone.engine.spi.RecordEngine`."""

from keepstone.core.backend import RecordBackend

__all__ = ["RecordBackend"]

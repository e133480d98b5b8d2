"""Blob stores usable beside a record backend: S3-compatible object storage."""

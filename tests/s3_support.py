"""An S3-compatible server for the tests: moto in server mode, on 127.0.0.1.

Real HTTP, nothing patched: keepstone talks to it through obstore as it would
to AWS. The server lives in memory and goes away with the test session.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

ACCESS_KEY = "keepstone-test-key"
SECRET_KEY = "keepstone-test-secret-9f3a"
REGION = "us-east-1"


@contextmanager
def moto_server() -> Iterator[str]:
    """Start moto's S3 server on a free port; yield its endpoint URL."""
    server_mod = pytest.importorskip("moto.server", reason="moto[server] is not installed")
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def create_bucket(endpoint: str, name: str) -> None:
    import boto3

    boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    ).create_bucket(Bucket=name)


def s3_options(endpoint: str) -> dict[str, str]:
    """The ``s3_*`` options of a ``postgresql://`` URL for this server."""
    return {
        "s3_endpoint": endpoint,
        "s3_region": REGION,
        "s3_access_key_id": ACCESS_KEY,
        "s3_secret_access_key": SECRET_KEY,
    }

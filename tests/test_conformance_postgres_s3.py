"""The conformance suite against PostgreSQL with blobs in S3 (moto over real HTTP).

``blob_threshold=32`` sends almost every blob of the suite to the bucket, so
the S3 path (upload before commit, verified reads, streamed multipart puts,
purges) is what the suite exercises.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests import s3_support
from tests.test_conformance_postgres import PostgresConformance

BUCKET = "keepstone-conformance"


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    with s3_support.moto_server() as endpoint:
        s3_support.create_bucket(endpoint, BUCKET)
        yield endpoint


class TestPostgresS3Store(PostgresConformance):
    endpoint: str

    @pytest.fixture(autouse=True)
    def _s3(self, s3_endpoint: str) -> None:
        self.endpoint = s3_endpoint

    def url_options(self) -> dict[str, str]:
        options = s3_support.s3_options(self.endpoint)
        # One prefix per store: the schema name is unique to the test's location.
        return {"blobs": f"s3://{BUCKET}/" + "{schema}", "blob_threshold": "32", **options}

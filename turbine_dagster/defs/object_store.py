"""How the UPath-based resources reach S3: through dagster-aws's ``S3Resource`` and its settings."""

from typing import Any

from dagster_aws.s3 import S3Resource


def s3fs_options(s3: S3Resource | None) -> dict[str, Any]:
    """fsspec/s3fs options equivalent to an ``S3Resource``; empty for local folders and default AWS settings."""
    if s3 is None:
        return {}
    options: dict[str, Any] = {
        "endpoint_url": s3.endpoint_url,
        "key": s3.aws_access_key_id,
        "secret": s3.aws_secret_access_key,
        "token": s3.aws_session_token,
        "profile": s3.profile_name,
        "client_kwargs": {"region_name": s3.region_name} if s3.region_name else None,
    }
    return {name: value for name, value in options.items() if value}

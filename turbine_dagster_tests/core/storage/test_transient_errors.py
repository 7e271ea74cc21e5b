"""Which storage errors a retry may cure: the line between retried and final failures."""

import errno

import filelock
import pytest
from botocore.exceptions import ConnectTimeoutError, EndpointConnectionError, ReadTimeoutError

from turbine_dagster.core.storage.files import is_transient


def raised_from(error: BaseException, cause: BaseException) -> BaseException:
    try:
        raise error from cause
    except BaseException as raised:  # noqa: BLE001 - returned for inspection
        return raised


@pytest.mark.parametrize(
    "error",
    [
        TimeoutError("lock wait timed out"),
        filelock.Timeout("/registry/team_a.lock"),
        ConnectionResetError(errno.ECONNRESET, "reset by peer"),
        OSError(errno.EBUSY, "SlowDown"),  # s3fs: 503
        OSError(errno.EREMOTEIO, "InternalError"),  # s3fs: 500
        ReadTimeoutError(endpoint_url="http://s3"),
        ConnectTimeoutError(endpoint_url="http://s3"),
        EndpointConnectionError(endpoint_url="http://s3"),
        raised_from(RuntimeError("upload failed"), TimeoutError("read timed out")),
    ],
)
def test_timeouts_lost_connections_and_busy_servers_are_transient(error):
    assert is_transient(error)


@pytest.mark.parametrize(
    "error",
    [
        ValueError("column 'mean radius' missing"),
        FileNotFoundError(errno.ENOENT, "no such file"),
        PermissionError(errno.EACCES, "AccessDenied"),
        OSError(errno.EINVAL, "InvalidArgument"),
        KeyError("p_malignant"),
        raised_from(RuntimeError("upload failed"), PermissionError("AccessDenied")),
    ],
)
def test_errors_that_fail_again_are_not_transient(error):
    assert not is_transient(error)

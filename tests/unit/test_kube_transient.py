"""Which failures of a write a retry may pass (cycle/apply.py writes a change's record again after them)."""

from __future__ import annotations

import pytest
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import MaxRetryError, ReadTimeoutError

from hemostat.kube import ApiError, Conflict, transient


def api(status: int) -> ApiError:
    return ApiError(ApiException(status=status, reason="x"))


@pytest.mark.parametrize(
    ("failure", "passing"),
    [
        (Conflict("changed"), True),
        (api(429), True),
        (api(500), True),
        (api(503), True),
        (ReadTimeoutError(None, "/apis", "Read timed out."), True),
        (MaxRetryError(None, "/apis"), True),
        (ConnectionResetError(), True),
        (api(403), False),  # RBAC
        (api(422), False),  # validation, admission
        (api(404), False),
        (ValueError("a bug"), False),
    ],
)
def test_a_busy_or_silent_server_may_pass_a_refusal_stays(failure: Exception, passing: bool) -> None:
    assert transient(failure) is passing

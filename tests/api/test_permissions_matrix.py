"""docs/permissions.md is the reviewed artifact of who may call what: generated from each view's
``access`` (api/permissions_matrix.py, ``manage.py permissions_matrix``); these tests fail when the
code and the committed file disagree, so a change of access is reviewed as a diff of that table."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from api import permissions_matrix
from tenants.api.views import ApiKeyListCreateApi
from tenants.permissions import READ
from tests.api.test_openapi_walk import OPERATIONS, READ_ONLY_MAY_WRITE

UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}


def test_the_committed_matrix_matches_the_code():
    # Given the views' access as they are now, then the committed file says exactly the same
    # (on failure: run `python manage.py permissions_matrix` and commit docs/permissions.md)
    assert permissions_matrix.MATRIX_PATH.exists(), "docs/permissions.md is missing: run manage.py permissions_matrix"
    assert permissions_matrix.MATRIX_PATH.read_text() == permissions_matrix.render()
    call_command("permissions_matrix", "--check")


def test_a_change_of_access_fails_the_check_and_names_the_operation(monkeypatch):
    # Given a view whose access is lowered (a viewer could list API keys)
    monkeypatch.setattr(ApiKeyListCreateApi, "access", {**ApiKeyListCreateApi.access, "GET": READ})
    # When the check runs, then it fails with the row that changed
    with pytest.raises(CommandError) as exc:
        call_command("permissions_matrix", "--check")
    message = str(exc.value)
    assert "out of date" in message
    assert "-| `api_keys_list` | GET | `/api/v1/api-keys/` | · | · | ✓ | ✓ |" in message
    assert "+| `api_keys_list` | GET | `/api/v1/api-keys/` | ✓ | ✓ | ✓ | ✓ |" in message


def test_every_operation_of_the_document_has_one_row():
    ops = sorted((op.method, op.path) for op in OPERATIONS if op.method not in ("HEAD", "OPTIONS"))
    rows = sorted((r["method"], r["path"]) for r in permissions_matrix.rows())
    assert rows == ops


def test_viewers_and_read_only_keys_never_write():
    """The policy the walk pins too (tests/api/test_openapi_walk.py), read off the matrix."""
    offenders = [
        r["operation"]
        for r in permissions_matrix.rows()
        if r["method"] in UNSAFE
        and r["roles"] is not None
        and (r["roles"]["viewer"] or r["scopes"]["read"])
        and r["operation"] not in READ_ONLY_MAY_WRITE
    ]
    assert offenders == []

"""Master key ring and ``manage.py rotate_master_key``: data keys wrapped by an older master key keep
decrypting during a rotation; after the command re-wraps them all, the old key can go and secrets
and model artifacts still decrypt."""

from __future__ import annotations

import base64
import io
import os

import numpy as np
import pytest
from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command
from django_tenants.utils import schema_context

from api.errors import ApplicationError
from compliance import credentials, vault
from compliance.models import AuditRecord, DataKey
from config.settings.security import _old_keys
from models_registry import serving
from tests.models_registry.factories import small_bundle, stored_version

pytestmark = pytest.mark.django_db

K1 = base64.b64encode(os.urandom(32)).decode()
K2 = base64.b64encode(os.urandom(32)).decode()
SECRET = "telegram-bot-token-0123456789abcdef"
REAL = {django_settings.FIELD_ENCRYPTION_KEY_ID: django_settings.FIELD_ENCRYPTION_KEY}  # the session's master key


@pytest.fixture
def ring(settings):
    """Master key "t1" current. The session's own master key stays in the ring as an old key, so
    data keys other tests' fixtures committed (under it) keep unwrapping."""
    settings.FIELD_ENCRYPTION_KEY, settings.FIELD_ENCRYPTION_KEY_ID = K1, "t1"
    settings.FIELD_ENCRYPTION_OLD_KEYS = REAL
    vault._dek_cache.clear()
    serving._bundles.clear()
    yield settings
    vault._dek_cache.clear()
    serving._bundles.clear()


def _rotate_to_t2(settings, old: dict | None = None) -> None:
    """Deploy step: the new key "t2" becomes current, "t1" moves to the old keys (a fresh process:
    nothing cached)."""
    settings.FIELD_ENCRYPTION_KEY, settings.FIELD_ENCRYPTION_KEY_ID = K2, "t2"
    settings.FIELD_ENCRYPTION_OLD_KEYS = {**REAL, "t1": K1} if old is None else old
    vault._dek_cache.clear()
    serving._bundles.clear()


def _run(*args) -> str:
    out = io.StringIO()
    call_command("rotate_master_key", *args, stdout=out, stderr=out)
    return out.getvalue()


def _masters(fx) -> set[str]:
    with schema_context(fx.tenant.schema_name):
        return set(DataKey.objects.values_list("master_key_id", flat=True))


class TestSetting:
    def test_old_keys_accept_json_object_json_list_and_comma_list(self):
        expected = {"k0": K1, "k1": K2}
        assert _old_keys(f'{{"k0": "{K1}", "k1": "{K2}"}}') == expected
        assert _old_keys(f'["k0:{K1}", "k1:{K2}"]') == expected
        assert _old_keys(f" k0:{K1} , k1:{K2} ") == expected
        assert _old_keys("") == {}

    def test_a_bad_entry_is_named_without_showing_a_key(self):
        with pytest.raises(ValueError) as exc:
            _old_keys(f"k0:{K1},{K2}")
        assert "entry 2" in str(exc.value) and K1 not in str(exc.value) and K2 not in str(exc.value)

    def test_a_key_that_is_not_32_bytes_or_reuses_the_current_id_is_refused(self, ring):
        ring.FIELD_ENCRYPTION_OLD_KEYS = {"k0": base64.b64encode(b"short").decode()}
        with pytest.raises(ImproperlyConfigured, match="'k0' must be 32 bytes"):
            vault.master_key_ring()
        ring.FIELD_ENCRYPTION_OLD_KEYS = {"t1": K2}
        with pytest.raises(ImproperlyConfigured, match="new FIELD_ENCRYPTION_KEY_ID"):
            vault.master_key_ring()
        with pytest.raises(CommandError, match="new FIELD_ENCRYPTION_KEY_ID"):
            _run()


class TestRing:
    def test_data_keys_wrapped_by_an_old_master_key_still_decrypt(self, ring, alpha):
        # given: a blob made while t1 was the master key
        with schema_context("t_alpha"):
            DataKey.objects.update(active=False)  # a data key of its own, under t1
            blob = vault.encrypt(b"artifact bytes", b"model:m@1")
            assert _masters(alpha) >= {"t1"}
        # when: t2 becomes current with t1 in the old keys (a new process: nothing cached)
        _rotate_to_t2(ring)
        with schema_context("t_alpha"):
            # then: it decrypts, and new writes still work
            assert vault.decrypt(blob, b"model:m@1") == b"artifact bytes"
            assert vault.decrypt(vault.encrypt(b"new"), b"") == b"new"
        # when: t1 is dropped before the data keys were re-wrapped
        _rotate_to_t2(ring, old=REAL)
        with schema_context("t_alpha"), pytest.raises(ApplicationError) as exc:
            vault.decrypt(blob, b"model:m@1")
        # then: the error says which key is missing and what to do
        assert exc.value.code == "undecryptable" and "FIELD_ENCRYPTION_OLD_KEYS" in exc.value.message
        assert "'t1'" in exc.value.message


class TestRotateCommand:
    def _given_secrets_and_an_artifact_under_t1(self, alpha, beta):
        with schema_context("t_alpha"):
            DataKey.objects.update(active=False)
            credentials.credential_create(name="tg", kind="telegram", secret=SECRET, actor="test")
            version = stored_version("rot-model")
        with schema_context("t_beta"):
            DataKey.objects.update(active=False)
            blob = vault.encrypt(b"beta secret", b"credential:x")
        return version, blob

    def test_rewraps_every_tenant_then_the_old_key_can_go(self, ring, alpha, beta):
        version, beta_blob = self._given_secrets_and_an_artifact_under_t1(alpha, beta)
        _rotate_to_t2(ring)
        # when: the command runs over every tenant schema
        out = _run()
        # then: it reports per tenant and in total, and every data key is wrapped by t2
        assert "alpha: 1 re-wrapped" in out or "alpha: 2 re-wrapped" in out, out
        assert "beta: 1 re-wrapped" in out and "0 failed" in out and "can be removed" in out
        assert _masters(alpha) == {"t2"} and _masters(beta) == {"t2"}
        with schema_context("t_alpha"):
            assert not DataKey.objects.filter(rewrapped_at=None).exists()
            rec = AuditRecord.objects.get(action="vault.master_key_rotated")
            assert rec.details["master_key_id"] == "t2" and rec.details["rewrapped"] >= 1
        # when: the old keys are removed (a new process)
        _rotate_to_t2(ring, old={})
        # then: the credential, the model artifact and beta's blob all decrypt with t2 alone
        with schema_context("t_alpha"):
            assert credentials.credential_use("tg", "send alert", "test") == SECRET
            x = np.zeros((1, 3))
            np.testing.assert_allclose(serving.bundle_get(version).predict_proba(x), small_bundle().predict_proba(x))
        with schema_context("t_beta"):
            assert vault.decrypt(beta_blob, b"credential:x") == b"beta secret"

    def test_idempotent_and_resumable(self, ring, alpha, beta):
        self._given_secrets_and_an_artifact_under_t1(alpha, beta)
        _rotate_to_t2(ring)
        # given: a run that stopped after alpha
        out = _run("--tenant", "alpha")
        assert "[1/1] alpha:" in out and _masters(beta) == {"t1"}
        with schema_context("t_alpha"):
            wrapped = {d.key_id: bytes(d.wrapped) for d in DataKey.objects.all()}
        # when: it runs again over everything
        out = _run()
        # then: alpha's keys are only checked (not rewritten), beta's are re-wrapped
        assert "alpha: 0 re-wrapped" in out and "beta: 1 re-wrapped" in out, out
        with schema_context("t_alpha"):
            assert {d.key_id: bytes(d.wrapped) for d in DataKey.objects.all()} == wrapped
            assert AuditRecord.objects.filter(action="vault.master_key_rotated").count() == 1
        assert "total: 0 re-wrapped" in _run()

    def test_a_key_that_does_not_unwrap_fails_loudly_and_changes_nothing(self, ring, alpha, beta):
        self._given_secrets_and_an_artifact_under_t1(alpha, beta)
        # given: the ring names t1 with the wrong key
        _rotate_to_t2(ring, old={**REAL, "t1": base64.b64encode(os.urandom(32)).decode()})
        with pytest.raises(SystemExit) as exc:
            out = io.StringIO()
            call_command("rotate_master_key", "--tenant", "beta", stdout=out, stderr=out)
        assert exc.value.code == 1
        text = out.getvalue()
        assert "1 failed" in text and "does not unwrap with master key 't1'" in text and "run this again" in text
        assert _masters(beta) == {"t1"}
        # and: with t1 missing from the ring, the message says where to add it
        _rotate_to_t2(ring, old=REAL)
        with pytest.raises(SystemExit):
            out = io.StringIO()
            call_command("rotate_master_key", "--tenant", "beta", stdout=out, stderr=out)
        assert "add it to FIELD_ENCRYPTION_OLD_KEYS" in out.getvalue()

    def test_new_data_keys_for_new_writes_while_old_blobs_stay_readable(self, ring, alpha, beta):
        self._given_secrets_and_an_artifact_under_t1(alpha, beta)
        with schema_context("t_beta"):
            old_key = DataKey.objects.get(active=True).key_id
            old_blob = vault.encrypt(b"old", b"c")
        _rotate_to_t2(ring)
        # when: rotating with fresh data keys
        out = _run("--tenant", "beta", "--new-data-keys")
        assert "new data key dek-" in out
        with schema_context("t_beta"):
            active = DataKey.objects.get(active=True)
            assert active.key_id != old_key and active.master_key_id == "t2" and active.rewrapped_at is None
            assert DataKey.objects.get(key_id=old_key).active is False
            # then: new writes use the new data key, old blobs still decrypt
            new_blob = vault.encrypt(b"new", b"c")
            assert active.key_id.encode() in new_blob and old_key.encode() not in new_blob
            assert vault.decrypt(old_blob, b"c") == b"old" and vault.decrypt(new_blob, b"c") == b"new"
        # and: a re-run starts no further key
        out = _run("--tenant", "beta", "--new-data-keys")
        assert "new data key" not in out.split("total:")[0]
        with schema_context("t_beta"):
            assert DataKey.objects.filter(active=True).get().key_id == active.key_id

    def test_dry_run_counts_and_writes_nothing(self, ring, alpha, beta):
        self._given_secrets_and_an_artifact_under_t1(alpha, beta)
        _rotate_to_t2(ring)
        out = _run("--tenant", "beta", "--dry-run")
        assert "beta: 1 to re-wrap" in out and "(dry run)" in out
        assert _masters(beta) == {"t1"}

    def test_unknown_tenant_is_an_error(self, ring):
        with pytest.raises(CommandError, match="No tenant nope"):
            _run("--tenant", "nope")

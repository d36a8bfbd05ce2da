import pytest
from django.db import connection, transaction
from django.db.utils import DatabaseError
from django_tenants.utils import schema_context

from api.errors import ApplicationError
from compliance import vault
from compliance.models import AuditRecord, DataKey
from compliance.services import audit_record

pytestmark = pytest.mark.django_db


class TestAudit:
    def test_record_names_actor_and_object(self, alpha):
        with schema_context("t_alpha"):
            rec = audit_record(alpha.users["admin"], "thing.done", alpha.tenant, {"n": 1})
            assert rec.actor == f"user:{alpha.users['admin'].pk}"  # a pseudonym: no e-mail in the chain
            assert (rec.object_type, rec.object_id, rec.details) == ("Tenant", str(alpha.tenant.pk), {"n": 1})
            assert audit_record(None, "x.y").actor == "system"

    def test_append_only_in_python_and_in_the_database(self, alpha):
        with schema_context("t_alpha"):
            rec = audit_record("system", "thing.done")
            with pytest.raises(RuntimeError):
                rec.save()
            with pytest.raises(RuntimeError):
                rec.delete()
            for sql in ("UPDATE compliance_auditrecord SET action='x'", "DELETE FROM compliance_auditrecord"):
                # the app role lacks the privilege; even the owner meets the trigger
                for role, refusal in (("", "permission denied|append-only"), ("SET LOCAL ROLE NONE", "append-only")):
                    with pytest.raises(DatabaseError, match=refusal), transaction.atomic():
                        with connection.cursor() as cur:
                            if role:
                                cur.execute(role)
                            cur.execute(sql)

    def test_records_stay_in_their_tenant(self, alpha, beta):
        with schema_context("t_alpha"):
            audit_record("system", "alpha.only")
        with schema_context("t_beta"):
            assert not AuditRecord.objects.filter(action="alpha.only").exists()


class TestVault:
    def test_roundtrip_with_wrapped_key_and_context(self, alpha):
        with schema_context("t_alpha"):
            blob = vault.encrypt(b"telegram-token-123", b"credential:telegram")
            assert b"telegram-token-123" not in blob
            assert vault.decrypt(blob, b"credential:telegram") == b"telegram-token-123"
            dk = DataKey.objects.get(active=True)
            assert len(bytes(dk.wrapped)) == 12 + 32 + 16  # nonce + wrapped 256-bit key + tag
            with pytest.raises(ApplicationError):
                vault.decrypt(blob, b"credential:other")

    def test_tampered_ciphertext_fails(self, alpha):
        with schema_context("t_alpha"):
            blob = bytearray(vault.encrypt(b"secret"))
            blob[-1] ^= 1
            with pytest.raises(ApplicationError) as exc:
                vault.decrypt(bytes(blob))
            assert exc.value.code == "undecryptable"

    def test_other_tenant_cannot_decrypt(self, alpha, beta):
        with schema_context("t_alpha"):
            blob = vault.encrypt(b"alpha secret")
        with schema_context("t_beta"):
            vault.encrypt(b"make beta a key too")
            with pytest.raises(ApplicationError):
                vault.decrypt(blob)

"""Write-only credentials: services, the /api/v1/credentials/ API and the tenant-scoped admin."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from django_tenants.utils import schema_context

from accounts.models import User
from api.errors import ApplicationError, NotFound
from compliance import credentials
from compliance.models import AuditRecord, Credential
from tenants.admin import COMPLIANCE_GROUP
from tests.conftest import PASSWORD, error_code

pytestmark = pytest.mark.django_db

URL = "/api/v1/credentials/"
ADMIN_URL = "/admin/compliance/credential/"
SECRET = "sk-live-4f9a8b7c6d5e4f3a2b1c"  # long enough for a hint
SECRET_2 = "sk-live-0123456789abcdefZZZZ"


def _in(fx):
    return schema_context(fx.tenant.schema_name)


def _audit(fx, action: str) -> list[AuditRecord]:
    with _in(fx):
        return list(AuditRecord.objects.filter(action=action).order_by("id"))


def _make(fx, name="binance-main", secret=SECRET, kind="exchange", metadata=None) -> Credential:
    with _in(fx):
        return credentials.credential_create(
            name=name, kind=kind, secret=secret, metadata=metadata or {"exchange": "binance"}, actor="test"
        )


# --- services ----------------------------------------------------------------------------------


class TestServices:
    def test_create_keeps_only_ciphertext_and_a_hint_and_use_returns_the_secret_audited(self, alpha):
        # given: a credential created by the owner
        owner = alpha.users["owner"]
        with _in(alpha):
            c = credentials.credential_create(
                name="binance-main", kind="exchange", secret=SECRET, metadata={"testnet": True}, actor=owner
            )
            row = Credential.objects.get(pk=c.pk)
            # then: the row holds a vault blob, not the secret, and a hint of the last 4 characters
            assert SECRET.encode() not in bytes(row.ciphertext) and bytes(row.ciphertext)[:2] == b"v1"
            assert (row.hint, row.version, row.created_by, row.last_used_at) == ("…2b1c", 1, owner.email, None)
            # when: code uses it at its point of use
            assert credentials.credential_use("binance-main", "place order", owner) == SECRET
            row.refresh_from_db()
            assert row.last_used_at is not None
        # then: created and used are audited with the purpose, never the value
        created, used = _audit(alpha, "credential.created"), _audit(alpha, "credential.used")
        assert [r.details for r in created] == [{"name": "binance-main", "kind": "exchange", "version": 1}]
        assert [r.details for r in used] == [{"name": "binance-main", "purpose": "place order", "version": 1}]
        assert used[0].object_id == str(c.pk)

    def test_short_secret_gets_no_hint(self, alpha):
        c = _make(alpha, secret="123456789012345")  # 15 characters
        assert c.hint == ""
        assert _make(alpha, name="long", secret="1234567890123456").hint == "…3456"

    def test_rotate_replaces_the_secret_and_counts_versions(self, alpha):
        c = _make(alpha)
        with _in(alpha):
            rotated = credentials.credential_rotate(credential_id=c.pk, secret=SECRET_2, actor="test")
            assert (rotated.version, rotated.hint) == (2, "…ZZZZ") and rotated.rotated_at is not None
            assert credentials.credential_use("binance-main", "check", "test") == SECRET_2
        assert [r.details for r in _audit(alpha, "credential.rotated")] == [{"name": "binance-main", "version": 2}]

    def test_delete_is_audited(self, alpha):
        c = _make(alpha)
        with _in(alpha):
            credentials.credential_delete(credential_id=c.pk, actor="test")
            assert not Credential.objects.exists()
            with pytest.raises(NotFound):
                credentials.credential_use("binance-main", "check", "test")
            with pytest.raises(NotFound):
                credentials.credential_delete(credential_id=c.pk, actor="test")
        assert [r.details for r in _audit(alpha, "credential.deleted")] == [
            {"name": "binance-main", "kind": "exchange", "version": 1}
        ]

    def test_ciphertext_is_bound_to_its_row(self, alpha):
        # given: two credentials, and one's ciphertext copied onto the other
        a, b = _make(alpha, name="a"), _make(alpha, name="b", secret="other-secret-value-xyz")
        with _in(alpha):
            Credential.objects.filter(pk=b.pk).update(ciphertext=Credential.objects.get(pk=a.pk).ciphertext)
            # then: it does not decrypt there
            with pytest.raises(ApplicationError) as exc:
                credentials.credential_use("b", "check", "test")
            assert exc.value.code == "undecryptable"

    @pytest.mark.parametrize(
        ("kind", "metadata", "code", "bad_key"),
        [
            ("exchange", {"password": "x"}, "invalid_metadata", "password"),
            ("smtp", {"port": 70000}, "invalid_metadata", "port"),
            ("smtp", {"port": True}, "invalid_metadata", "port"),
            ("webhook", {"url": "http://insecure.example/hook"}, "invalid_metadata", "url"),
            ("broker", {"environment": "prod"}, "invalid_metadata", "environment"),
            ("telegram", {"chat_id": "not a chat"}, "invalid_metadata", "chat_id"),
            ("other", {"description": "x" * 201}, "invalid_metadata", "description"),
            ("other", ["not", "an", "object"], "invalid_metadata", None),
            ("exchange", {"account": f"acct {SECRET}"}, "secret_in_metadata", None),
        ],
    )
    def test_bad_metadata_is_refused_and_nothing_written(self, alpha, kind, metadata, code, bad_key):
        with _in(alpha):
            audits = AuditRecord.objects.count()
            with pytest.raises(ApplicationError) as exc:
                credentials.credential_create(name="c", kind=kind, secret=SECRET, metadata=metadata, actor="test")
            assert exc.value.code == code and exc.value.status == 400
            if bad_key:
                assert bad_key in exc.value.details["metadata"]
            assert SECRET not in str(exc.value.message) + str(exc.value.details)
            assert not Credential.objects.exists() and AuditRecord.objects.count() == audits

    def test_valid_metadata_per_kind(self, alpha):
        ok = {
            "exchange": {"exchange": "binance", "account": "main", "api_key_id": "AKID", "testnet": False},
            "broker": {"broker": "ibkr", "account": "U123", "environment": "paper"},
            "telegram": {"chat_id": -1001234567890, "bot_username": "alerts_bot"},
            "webhook": {"url": "https://hooks.example.com/in", "header_name": "X-Token"},
            "smtp": {"host": "smtp.example.com", "port": 587, "username": "ops", "use_tls": True,
                     "from_email": "ops@example.com"},
            "other": {"description": "anything non-secret"},
        }  # fmt: skip
        for kind, metadata in ok.items():
            assert _make(alpha, name=f"c-{kind}", kind=kind, metadata=metadata).metadata == metadata

    def test_bad_name_kind_secret_and_duplicate(self, alpha):
        _make(alpha)
        with _in(alpha):
            for kwargs, code in [
                ({"name": "has space"}, "invalid_input"),
                ({"kind": "bank"}, "invalid_input"),
                ({"secret": "   "}, "invalid_secret"),
                ({"secret": "x\x00y"}, "invalid_secret"),
                ({"secret": "x" * 4097}, "invalid_secret"),
                ({"name": "binance-main"}, "credential_name_taken"),
            ]:
                args = {"name": "new", "kind": "other", "secret": SECRET, "metadata": {}, **kwargs}
                with pytest.raises(ApplicationError) as exc:
                    credentials.credential_create(**args, actor="test")
                assert exc.value.code == code, kwargs
            assert list(Credential.objects.values_list("name", flat=True)) == ["binance-main"]

    def test_use_needs_a_purpose(self, alpha):
        _make(alpha)
        with _in(alpha), pytest.raises(ApplicationError) as exc:
            credentials.credential_use("binance-main", " ", "test")
        assert exc.value.code == "invalid_input"
        assert _audit(alpha, "credential.used") == []


# --- API ---------------------------------------------------------------------------------------


def _post(client, body, url=URL):
    return client.post(url, body, format="json")


class TestApi:
    def test_create_list_detail_show_metadata_and_hint_never_the_secret(self, alpha):
        # when: the owner stores a credential
        c = alpha.client(role="owner")
        r = _post(c, {"name": "tg-alerts", "kind": "telegram", "secret": SECRET, "metadata": {"chat_id": "42"}})
        # then: 201 with metadata, hint and version, and no secret
        assert r.status_code == 201, r.content
        body = r.json()
        assert "secret" not in body and SECRET not in r.content.decode() and r["Cache-Control"] == "no-store"
        assert (body["name"], body["kind"], body["hint"], body["version"]) == ("tg-alerts", "telegram", "…2b1c", 1)
        assert body["metadata"] == {"chat_id": "42"} and body["created_by"] == alpha.users["owner"].email
        # and: list and detail show the same, never the secret
        listed = c.get(URL)
        assert listed.status_code == 200 and [i["name"] for i in listed.json()["results"]] == ["tg-alerts"]
        detail = c.get(f"{URL}{body['id']}/")
        assert detail.status_code == 200 and detail.json() == body
        assert SECRET not in listed.content.decode() + detail.content.decode()
        with _in(alpha):
            assert credentials.credential_use("tg-alerts", "send alert", "test") == SECRET

    def test_list_runs_a_fixed_number_of_queries(self, alpha, django_assert_max_num_queries):
        for n in range(5):
            _make(alpha, name=f"c{n}")
        c = alpha.client(role="admin")
        c.get(URL)  # warm the per-process caches (tenant resolution)
        with django_assert_max_num_queries(12):
            r = c.get(URL)
        assert len(r.json()["results"]) == 5

    def test_rotate_and_delete(self, alpha):
        cred = _make(alpha)
        c = alpha.client(role="admin")
        r = _post(c, {"secret": SECRET_2}, f"{URL}{cred.pk}/rotate/")
        assert r.status_code == 200, r.content
        assert (r.json()["version"], r.json()["hint"]) == (2, "…ZZZZ") and SECRET_2 not in r.content.decode()
        with _in(alpha):
            assert credentials.credential_use("binance-main", "check", "test") == SECRET_2
        r = c.delete(f"{URL}{cred.pk}/")
        assert r.status_code == 204 and not r.content
        assert c.get(f"{URL}{cred.pk}/").status_code == 404
        assert len(_audit(alpha, "credential.deleted")) == 1

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"kind": "exchange", "secret": SECRET}, "name"),
            ({"name": "bad name!", "kind": "exchange", "secret": SECRET}, "name"),
            ({"name": "x", "kind": "bank", "secret": SECRET}, "kind"),
            ({"name": "x", "kind": "exchange"}, "secret"),
            ({"name": "x", "kind": "exchange", "secret": ""}, "secret"),
            ({"name": "x", "kind": "exchange", "secret": SECRET * 200}, "secret"),
            ({"name": "x", "kind": "exchange", "secret": SECRET, "metadata": "text"}, "metadata"),
        ],
    )
    def test_bad_input_is_400_naming_the_field_and_writes_nothing(self, alpha, body, field):
        r = _post(alpha.client(role="owner"), body)
        assert r.status_code == 400 and error_code(r) == "invalid_input", r.content
        assert field in r.json()["error"]["details"]
        assert SECRET not in r.content.decode()
        with _in(alpha):
            assert not Credential.objects.exists() and not AuditRecord.objects.filter(action__startswith="cred")

    def test_service_validation_errors_are_400_and_never_echo_the_secret(self, alpha):
        c = alpha.client(role="owner")
        responses = []
        r = _post(c, {"name": "x", "kind": "webhook", "secret": SECRET, "metadata": {"token": SECRET}})
        assert r.status_code == 400 and error_code(r) == "secret_in_metadata"
        responses.append(r)
        r = _post(c, {"name": "x", "kind": "webhook", "secret": SECRET, "metadata": {"url": "ftp://x"}})
        assert r.status_code == 400 and error_code(r) == "invalid_metadata"
        assert list(r.json()["error"]["details"]["metadata"]) == ["url"]
        responses.append(r)
        r = c.post(URL, f'{{"name": "x", "secret": "{SECRET}",', content_type="application/json")  # malformed JSON
        assert r.status_code == 400
        responses.append(r)
        r = _post(c, {"name": "x", "kind": SECRET, "secret": SECRET})  # even a secret pasted in the wrong field
        assert r.status_code == 400 and error_code(r) == "invalid_input"
        responses.append(r)
        for response in responses:
            assert SECRET not in response.content.decode()
        with _in(alpha):
            assert not Credential.objects.exists()

    def test_duplicate_name_is_409(self, alpha):
        _make(alpha)
        r = _post(alpha.client(role="owner"), {"name": "binance-main", "kind": "other", "secret": SECRET_2})
        assert r.status_code == 409 and error_code(r) == "credential_name_taken"
        with _in(alpha):
            assert Credential.objects.get().kind == "exchange"

    def test_rotate_with_bad_input_changes_nothing(self, alpha):
        cred = _make(alpha)
        r = _post(alpha.client(role="owner"), {"secret": ""}, f"{URL}{cred.pk}/rotate/")
        assert r.status_code == 400 and error_code(r) == "invalid_input" and "secret" in r.json()["error"]["details"]
        with _in(alpha):
            assert Credential.objects.get().version == 1

    @pytest.mark.parametrize("role", ["analyst", "viewer"])
    def test_roles_below_admin_get_403_for_reads_and_writes(self, alpha, role):
        cred = _make(alpha)
        c = alpha.client(role=role)
        for r in (
            c.get(URL),
            c.get(f"{URL}{cred.pk}/"),
            _post(c, {"name": "n", "kind": "other", "secret": SECRET}),
            _post(c, {"secret": SECRET_2}, f"{URL}{cred.pk}/rotate/"),
            c.delete(f"{URL}{cred.pk}/"),
        ):
            assert r.status_code == 403 and error_code(r) == "insufficient_role", r.content
        with _in(alpha):
            assert Credential.objects.get().version == 1

    def test_api_keys_need_the_admin_scope(self, alpha):
        cred = _make(alpha)
        for scope in ("read", "trade"):
            r = alpha.client(scope=scope).get(URL)
            assert r.status_code == 403 and error_code(r) == "insufficient_scope"
        assert alpha.client(scope="admin").get(f"{URL}{cred.pk}/").status_code == 200

    def test_other_tenants_credential_is_404_and_untouched(self, alpha, beta):
        cred = _make(alpha)
        c = beta.client(role="owner")
        assert c.get(f"{URL}{cred.pk}/").status_code == 404
        r = _post(c, {"secret": SECRET_2}, f"{URL}{cred.pk}/rotate/")
        assert r.status_code == 404 and error_code(r) == "not_found"
        assert c.delete(f"{URL}{cred.pk}/").status_code == 404
        assert c.get(URL).json()["results"] == []
        with _in(alpha):
            assert Credential.objects.get().version == 1
            assert credentials.credential_use("binance-main", "check", "test") == SECRET


# --- admin -------------------------------------------------------------------------------------


@pytest.fixture
def su(alpha) -> Client:
    root = User.objects.create_superuser(email="root@cred.test", password=PASSWORD)
    c = Client()
    c.force_login(root)
    assert c.post("/admin/tenant-switch/", {"tenant": alpha.tenant.pk}).status_code == 302
    c.user = root
    return c


class TestAdmin:
    def test_add_page_has_an_empty_password_input(self, su):
        html = su.get(f"{ADMIN_URL}add/").content.decode()
        assert 'type="password" name="secret"' in html and 'name="ciphertext"' not in html

    def test_add_rotate_and_delete_through_the_admin_are_audited_and_never_show_the_secret(self, su, alpha):
        # when: staff add a credential
        r = su.post(f"{ADMIN_URL}add/", {"name": "smtp-main", "kind": "smtp", "secret": SECRET, "metadata": "{}"})
        assert r.status_code == 302, r.content.decode()[:3000]
        with _in(alpha):
            cred = Credential.objects.get()
            assert credentials.credential_use("smtp-main", "check", "test") == SECRET
        created = _audit(alpha, "credential.created")
        assert len(created) == 1 and created[0].actor.startswith(f"user:{su.user.pk}")
        # then: list and change page show the hint, never the secret, and the password input is empty
        for url in (ADMIN_URL, f"{ADMIN_URL}{cred.pk}/change/"):
            html = su.get(url).content.decode()
            assert "…2b1c" in html and SECRET not in html
        change = su.get(f"{ADMIN_URL}{cred.pk}/change/").content.decode()
        assert 'type="password" name="secret"' in change and 'name="secret" value=' not in change
        # when: saved with the secret left blank, nothing changes
        r = su.post(f"{ADMIN_URL}{cred.pk}/change/", {"secret": ""})
        assert r.status_code == 302
        with _in(alpha):
            assert Credential.objects.get().version == 1
        # when: a new secret is typed, it is rotated
        r = su.post(f"{ADMIN_URL}{cred.pk}/change/", {"secret": SECRET_2})
        assert r.status_code == 302
        with _in(alpha):
            assert Credential.objects.get().version == 2
            assert credentials.credential_use("smtp-main", "check", "test") == SECRET_2
        assert len(_audit(alpha, "credential.rotated")) == 1
        # when: deleted
        r = su.post(f"{ADMIN_URL}{cred.pk}/delete/", {"post": "yes"})
        assert r.status_code == 302
        with _in(alpha):
            assert not Credential.objects.exists()
        assert len(_audit(alpha, "credential.deleted")) == 1

    def test_admin_validation_error_does_not_echo_the_secret_or_write(self, su, alpha):
        r = su.post(
            f"{ADMIN_URL}add/",
            {"name": "x", "kind": "webhook", "secret": SECRET, "metadata": '{"url": "http://plain.example"}'},
        )
        html = r.content.decode()
        assert r.status_code == 200 and "https:// URL" in html and SECRET not in html
        r = su.post(f"{ADMIN_URL}add/", {"name": "x", "kind": "other", "secret": "", "metadata": "{}"})
        assert r.status_code == 200 and "Give the secret" in r.content.decode()
        with _in(alpha):
            assert not Credential.objects.exists()

    def test_compliance_staff_view_but_cannot_change(self, alpha):
        cred = _make(alpha)
        staff = User.objects.create_user(email="reviewer@cred.test", password=PASSWORD, is_staff=True)
        staff.groups.add(Group.objects.get_or_create(name=COMPLIANCE_GROUP)[0])
        c = Client()
        c.force_login(staff)
        c.post("/admin/tenant-switch/", {"tenant": alpha.tenant.pk})
        page = c.get(f"{ADMIN_URL}{cred.pk}/change/")
        assert page.status_code == 200 and 'name="secret"' not in page.content.decode()
        assert c.post(f"{ADMIN_URL}{cred.pk}/change/", {"secret": SECRET_2}).status_code == 403
        assert c.get(f"{ADMIN_URL}add/").status_code == 403
        with _in(alpha):
            assert Credential.objects.get().version == 1

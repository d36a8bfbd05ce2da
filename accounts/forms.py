"""HTML forms for the dashboard. They parse and show field errors; the rules live in services."""

from __future__ import annotations

from django import forms
from django.contrib.auth.password_validation import password_validators_help_texts

from api.errors import ApplicationError
from tenants.models import Plan, Role, Scope

# service error code -> the form field it belongs on
ERROR_FIELDS = {
    "email_taken": "email",
    "invalid_email": "email",
    "weak_password": "password1",
    "invalid_slug": "slug",
    "slug_taken": "slug",
    "unknown_plan": "plan",
    "already_member": "email",
    "invalid_role": "role",
    "owner_required": "role",
    "plan_limit_exceeded": None,
    "invalid_scopes": "scopes",
    "invalid_input": "name",
}


def service_error_apply(form: forms.Form, exc: ApplicationError) -> None:
    """Show a service's ApplicationError on the field it concerns (or above the form)."""
    field = ERROR_FIELDS.get(exc.code)
    messages = exc.details.get("password") if exc.code == "weak_password" else None
    if field not in form.fields:
        field = None
    for message in messages or [exc.message]:
        form.add_error(field, forms.ValidationError(message, code=exc.code))


class PasswordPairMixin:
    """Two password fields that must match; strength is checked by the service."""

    def clean(self):
        data = super().clean()
        p1, p2 = data.get("password1"), data.get("password2")
        if p1 and p2 and p1 != p2:
            self.add_error(
                "password2", forms.ValidationError("The two passwords don't match.", code="password_mismatch")
            )
        return data


def _password_fields():
    return (
        forms.CharField(
            label="Password",
            strip=False,
            widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
            help_text=" ".join(password_validators_help_texts()),
        ),
        forms.CharField(
            label="Repeat password", strip=False, widget=forms.PasswordInput(attrs={"autocomplete": "new-password"})
        ),
    )


def _plan_choices():
    return [(p.code, p.name) for p in Plan.objects.order_by("monthly_price_cents", "code")]


class TenantFieldsMixin(forms.Form):
    name = forms.CharField(label="Organisation name", max_length=120)
    slug = forms.SlugField(
        label="Tenant ID",
        max_length=40,
        help_text="3-40 lowercase letters, digits or hyphens; used in URLs and API calls. It can't be changed later.",
    )
    plan = forms.ChoiceField(widget=forms.RadioSelect, initial="free")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["plan"].choices = _plan_choices()

    def clean_slug(self):
        return self.cleaned_data["slug"].strip().lower()


class SignupForm(PasswordPairMixin, TenantFieldsMixin):
    full_name = forms.CharField(label="Your name", max_length=150, required=False)
    email = forms.EmailField(label="Work e-mail", widget=forms.EmailInput(attrs={"autocomplete": "email"}))
    password1, password2 = _password_fields()

    field_order = ["full_name", "email", "password1", "password2", "name", "slug", "plan"]


class TenantCreateForm(TenantFieldsMixin):
    pass


class LoginForm(forms.Form):
    email = forms.EmailField(
        label="E-mail", widget=forms.EmailInput(attrs={"autocomplete": "username", "autofocus": True})
    )
    password = forms.CharField(
        label="Password", strip=False, widget=forms.PasswordInput(attrs={"autocomplete": "current-password"})
    )


class InvitationSignupForm(PasswordPairMixin, forms.Form):
    full_name = forms.CharField(label="Your name", max_length=150, required=False)
    password1, password2 = _password_fields()


class TotpCodeForm(forms.Form):
    code = forms.CharField(
        label="Code from your app",
        max_length=8,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric"}),
        help_text="6 digits; a new one every 30 seconds.",
    )


class ProfileForm(forms.Form):
    full_name = forms.CharField(label="Name", max_length=301, required=False)


class InviteForm(forms.Form):
    email = forms.EmailField(label="E-mail")
    role = forms.ChoiceField(choices=[], initial=Role.VIEWER)

    def __init__(self, *args, actor_role: str = Role.ADMIN, **kwargs):
        super().__init__(*args, **kwargs)
        roles = [r for r in Role if r != Role.OWNER or actor_role == Role.OWNER]
        self.fields["role"].choices = [(r.value, r.label) for r in reversed(roles)]


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)


SCOPE_HELP = {
    Scope.READ: "read data, decisions and models",
    Scope.TRADE: "request decisions",
    Scope.ADMIN: "manage the tenant's resources",
}


class ApiKeyForm(forms.Form):
    name = forms.CharField(label="Name", max_length=80, help_text="Where the key is used, e.g. 'trading bot'.")
    scopes = forms.MultipleChoiceField(
        choices=[(s.value, f"{s.value} — {SCOPE_HELP[s]}") for s in Scope],
        widget=forms.CheckboxSelectMultiple,
        initial=[Scope.READ.value],
        error_messages={"required": "Pick at least one scope."},
    )

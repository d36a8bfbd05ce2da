"""Django admin's log-in with the same lockout as the dashboard and the API (accounts/lockout.py),
and the staff member's authenticator code when they enrolled one (accounts/totp.py).

Wired in ``AccountsConfig.ready``: ``admin.site.login_form`` is :class:`AdminLoginForm`, and
``admin.site.has_permission`` also asks that a session of a person with an authenticator passed
its code here — logging in through the dashboard (same session cookie) does not open the admin.
"""

from __future__ import annotations

from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.signals import user_logged_in
from django.dispatch import receiver

from . import lockout, totp


def _client_ip(request) -> str:
    return request.META.get("REMOTE_ADDR", "") if request is not None else ""


class AdminLoginForm(AdminAuthenticationForm):
    otp_code = forms.CharField(
        label="Authenticator code",
        required=False,
        max_length=8,
        widget=forms.TextInput(attrs={"autocomplete": "one-time-code", "inputmode": "numeric"}),
        help_text="The 6-digit code from your app, if you turned on two-factor log-in.",
    )

    error_messages = {
        **AdminAuthenticationForm.error_messages,
        "otp_required": "Enter the current 6-digit code from your authenticator app (two-factor log-in is on).",
    }

    def clean(self):
        username = (self.cleaned_data.get("username") or "").lower()
        ip = _client_ip(self.request)
        if username:
            try:
                lockout.lockout_check(username=username, ip=ip)
            except lockout.LoginLocked as exc:
                raise forms.ValidationError(exc.message, code="login_locked") from exc
        try:
            data = super().clean()  # authenticate + is_staff / is_active
        except forms.ValidationError:
            if username:
                lockout.failure_record(username=username, ip=ip, via="admin")
            raise
        user = self.get_user()
        if user is not None and totp.totp_enabled(user):
            if not totp.totp_verify(user=user, code=self.cleaned_data.get("otp_code", "")):
                lockout.failure_record(username=username, ip=ip, via="admin")
                raise forms.ValidationError(self.error_messages["otp_required"], code="otp_required")
            self.request._totp_verified_user = user.pk  # the session is marked once login() rotated it
        lockout.success_record(username=username)
        return data


@receiver(user_logged_in, dispatch_uid="accounts.admin_login.totp_session")
def _mark_totp_session(sender, request, user, **kwargs):
    if request is not None and getattr(request, "_totp_verified_user", None) == user.pk:
        request.session[totp.SESSION_KEY] = user.pk


def install(site) -> None:
    site.login_form = AdminLoginForm
    has_permission = site.has_permission

    def has_permission_with_second_factor(request) -> bool:
        return has_permission(request) and totp.admin_session_ok(request)

    site.has_permission = has_permission_with_second_factor

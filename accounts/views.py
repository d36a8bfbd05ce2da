"""Account pages: sign-up, log in/out, password reset, invitation links, profile."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import authenticate, login, logout, update_session_auth_hash
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import PasswordChangeForm
from django.shortcuts import redirect, render
from django.urls import reverse, reverse_lazy
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from api.errors import ApplicationError
from tenants.middleware import SESSION_TENANT_KEY
from tenants.models import Membership
from tenants.selectors import tenant_list_for_user

from . import lockout, services, totp
from .forms import InvitationSignupForm, LoginForm, ProfileForm, SignupForm, TotpCodeForm, service_error_apply
from .models import User


def client_ip(request) -> str:
    return request.META.get("REMOTE_ADDR", "")


def _next_url(request, default: str = "/app/") -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(target, {request.get_host()}, require_https=request.is_secure()):
        return target
    return default


def _session_start(request, user, tenant=None) -> None:
    """Log in (the session key is rotated) and pick the active tenant."""
    login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    tenant = tenant or tenant_list_for_user(user=user).order_by("memberships__created_at").first()
    if tenant is not None:
        request.session[SESSION_TENANT_KEY] = tenant.pk
    return tenant


def signup(request):
    if request.user.is_authenticated:
        return redirect("dashboard:tenant-new")
    form = SignupForm(request.POST or None)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            d = form.cleaned_data
            try:
                tenant, user = services.tenant_signup(
                    email=d["email"],
                    password=d["password1"],
                    slug=d["slug"],
                    plan=d["plan"],
                    name=d["name"],
                    full_name=d["full_name"],
                )
            except ApplicationError as exc:
                service_error_apply(form, exc)
            else:
                _session_start(request, user, tenant)
                messages.success(
                    request,
                    f"Welcome! {tenant.name} is ready. Next: the Getting started steps below lead to live decisions.",
                )
                return redirect("dashboard:overview")
        status = 400
    return render(request, "accounts/signup.html", {"form": form}, status=status)


def login_view(request):
    if request.user.is_authenticated and request.method == "GET":
        return redirect(_next_url(request))
    form = LoginForm(request.POST or None)
    status = 200
    if request.method == "POST":
        status = 400
        if form.is_valid():
            email, ip = form.cleaned_data["email"].lower(), client_ip(request)
            try:
                lockout.lockout_check(username=email, ip=ip)
            except lockout.LoginLocked as exc:
                form.add_error(None, exc.message)
                response = render(
                    request, "accounts/login.html", {"form": form, "next": _next_url(request, "")}, status=429
                )
                response["Retry-After"] = str(exc.seconds)
                return response
            user = authenticate(request, email=email, password=form.cleaned_data["password"])
            if user is None:
                lockout.failure_record(username=email, ip=ip, via="dashboard")
                form.add_error(None, "E-mail or password is wrong.")
            else:
                tenant = _session_start(request, user)
                services.login_success_record(user=user, email=email, tenant=tenant)
                return redirect(_next_url(request))
    return render(request, "accounts/login.html", {"form": form, "next": _next_url(request, "")}, status=status)


@require_POST
def logout_view(request):
    logout(request)
    messages.info(request, "You are logged out.")
    return redirect("accounts:login")


def invitation(request, token: str):
    """The link from an invitation e-mail."""
    try:
        invite = services.invitation_for_token(token)
    except ApplicationError as exc:
        return render(request, "accounts/invitation_invalid.html", {"error": exc}, status=exc.status)
    context = {"invite": invite, "token": token}
    user = request.user
    if user.is_authenticated:
        if request.method == "POST":
            try:
                membership = services.invitation_accept(token=token, user=user)
            except ApplicationError as exc:
                return render(request, "accounts/invitation_invalid.html", {"error": exc}, status=exc.status)
            request.session[SESSION_TENANT_KEY] = membership.tenant_id
            messages.success(request, f"You joined {invite.tenant.name} as {membership.role}.")
            return redirect("dashboard:overview")
        context["email_mismatch"] = user.email.lower() != invite.email.lower()
        return render(request, "accounts/invitation_accept.html", context)
    if User.objects.filter(email__iexact=invite.email).exists():
        context["login_url"] = reverse("accounts:login") + "?next=" + request.path
        return render(request, "accounts/invitation_accept.html", context)
    form = InvitationSignupForm(request.POST or None)
    status = 200
    if request.method == "POST":
        status = 400
        if form.is_valid():
            try:
                membership = services.invitation_accept_new_user(
                    token=token, password=form.cleaned_data["password1"], full_name=form.cleaned_data["full_name"]
                )
            except ApplicationError as exc:
                service_error_apply(form, exc)
            else:
                _session_start(request, membership.user, membership.tenant)
                messages.success(request, f"Welcome to {invite.tenant.name}! You joined as {membership.role}.")
                return redirect("dashboard:overview")
    context["form"] = form
    return render(request, "accounts/invitation_accept.html", context, status=status)


@login_required
def profile(request):
    user = request.user
    profile_form = ProfileForm(initial={"full_name": user.get_full_name()})
    password_form = PasswordChangeForm(user)
    status = 200
    if request.method == "POST":
        action = request.POST.get("action")
        if action == "profile":
            profile_form = ProfileForm(request.POST)
            if profile_form.is_valid():
                try:
                    services.user_profile_update(user=user, full_name=profile_form.cleaned_data["full_name"])
                except ApplicationError as exc:
                    service_error_apply(profile_form, exc)
                else:
                    messages.success(request, "Profile saved.")
                    return redirect("accounts:profile")
        elif action == "password":
            password_form = PasswordChangeForm(user, request.POST)
            if password_form.is_valid():
                password_form.save()
                update_session_auth_hash(request, user)  # keep this session, end the others
                messages.success(request, "Password changed. Other sessions were logged out.")
                return redirect("accounts:profile")
        status = 400
    memberships = Membership.objects.filter(user=user).select_related("tenant", "tenant__plan").order_by("tenant__name")
    return render(
        request,
        "accounts/profile.html",
        {"profile_form": profile_form, "password_form": password_form, "memberships": memberships},
        status=status,
    )


def csrf_failure(request, reason: str = ""):
    return render(request, "csrf_failure.html", {"reason": reason}, status=403)


# Django's password reset, with our templates; the e-mail goes through the configured mailer.
password_reset = auth_views.PasswordResetView.as_view(
    template_name="accounts/password_reset.html",
    email_template_name="accounts/email/password_reset.txt",
    html_email_template_name="accounts/email/password_reset.html",
    subject_template_name="accounts/email/password_reset_subject.txt",
    success_url=reverse_lazy("accounts:password-reset-sent"),
)
password_reset_sent = auth_views.PasswordResetDoneView.as_view(template_name="accounts/password_reset_sent.html")
password_reset_confirm = auth_views.PasswordResetConfirmView.as_view(
    template_name="accounts/password_reset_confirm.html", success_url=reverse_lazy("accounts:password-reset-complete")
)
password_reset_complete = auth_views.PasswordResetCompleteView.as_view(
    template_name="accounts/password_reset_complete.html"
)


@login_required
def two_factor(request):
    """Staff: turn on two-factor log-in for Django admin. The secret is shown once, on the page that
    draws it; reloading draws a new one (the previous was never confirmed)."""
    user, context, status = request.user, {}, 200
    if not user.is_staff:
        return render(request, "accounts/two_factor.html", {"not_staff": True}, status=403)
    form = TotpCodeForm(request.POST or None)
    enabled = totp.totp_enabled(user)
    if request.method == "POST":
        status = 400
        if form.is_valid():
            try:
                if request.POST.get("action") == "disable":
                    totp.totp_disable(user=user, code=form.cleaned_data["code"])
                    request.session.pop(totp.SESSION_KEY, None)
                    messages.success(request, "Two-factor log-in is off. Django admin asks for your password only.")
                else:
                    totp.totp_enrol_confirm(user=user, code=form.cleaned_data["code"])
                    messages.success(
                        request, "Two-factor log-in is on: Django admin now asks for a code from your app."
                    )
                return redirect("accounts:two-factor")
            except ApplicationError as exc:
                form.add_error("code", exc.message)
        context["pending"] = not enabled  # the secret was shown once already: not again
    elif not enabled:
        context["enrolment"] = totp.totp_enrol_start(user=user)
    response = render(request, "accounts/two_factor.html", {**context, "form": form, "enabled": enabled}, status=status)
    response["Cache-Control"] = "no-store"  # the page may carry the secret
    return response

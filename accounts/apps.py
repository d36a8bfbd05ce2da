from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts"

    def ready(self) -> None:
        from django.contrib import admin

        from .admin_login import install

        install(admin.site)  # lockout and the authenticator code on Django admin's log-in

from django.apps import AppConfig


class RiskcoreConfig(AppConfig):
    name = "riskcore"
    verbose_name = "Risk and analytics (AI core)"

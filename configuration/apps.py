from django.apps import AppConfig


class ConfigurationConfig(AppConfig):
    name = "configuration"
    verbose_name = "Configuration service"
    default_auto_field = "django.db.models.BigAutoField"

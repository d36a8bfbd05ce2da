from django.apps import AppConfig


class IntelligenceConfig(AppConfig):
    name = "intelligence"
    verbose_name = "Intelligence"

    def ready(self) -> None:
        from configuration import schema
        from configuration import services as config_services

        from . import services

        schema.register_check("flow", services.flow_config_check)
        config_services.register_hook(services.config_changed)

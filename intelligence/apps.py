from django.apps import AppConfig


class IntelligenceConfig(AppConfig):
    name = "intelligence"
    verbose_name = "Intelligence"

    def ready(self) -> None:
        from compliance.chain import register_chain
        from configuration import schema
        from configuration import services as config_services

        from . import services
        from .sealing import DECISIONS

        schema.register_check("flow", services.flow_config_check)
        register_chain(DECISIONS)
        config_services.register_hook(services.config_changed)

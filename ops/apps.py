from django.apps import AppConfig


class OpsConfig(AppConfig):
    name = "ops"
    verbose_name = "Ops"

    def ready(self):
        from . import metrics

        metrics.connect_signals()  # Celery task durations (task_prerun / task_postrun)

"""ASGI entry point: daphne serves the project's WebSockets but the decision feed (HTTP is served by
gunicorn, ``ws/decisions/`` by the edge process of ``intelligence/edge.py``; see README)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django_asgi = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

from models_registry.consumers import TrainingProgressConsumer  # noqa: E402
from notifications.consumers import NotificationConsumer  # noqa: E402
from ops.consumers import EchoConsumer  # noqa: E402
from ops.metrics import WebSocketMetrics  # noqa: E402
from tenants.channels import TenantWebSocketMiddleware  # noqa: E402

websocket_urlpatterns = [
    path("ws/echo/", EchoConsumer.as_asgi()),
    path("ws/training/", TrainingProgressConsumer.as_asgi()),
    path("ws/notifications/", NotificationConsumer.as_asgi()),
]

application = ProtocolTypeRouter(
    {
        "http": django_asgi,
        "websocket": WebSocketMetrics(TenantWebSocketMiddleware(URLRouter(websocket_urlpatterns))),
    }
)

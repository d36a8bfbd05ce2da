"""ASGI entry point: daphne serves WebSockets (HTTP is served by gunicorn; see README)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django_asgi = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

from intelligence.consumers import DecisionFeedConsumer  # noqa: E402
from models_registry.consumers import TrainingProgressConsumer  # noqa: E402
from ops.consumers import EchoConsumer  # noqa: E402
from tenants.channels import TenantWebSocketMiddleware  # noqa: E402

websocket_urlpatterns = [
    path("ws/echo/", EchoConsumer.as_asgi()),
    path("ws/training/", TrainingProgressConsumer.as_asgi()),
    path("ws/decisions/", DecisionFeedConsumer.as_asgi()),
]

application = ProtocolTypeRouter(
    {
        "http": django_asgi,
        "websocket": TenantWebSocketMiddleware(URLRouter(websocket_urlpatterns)),
    }
)

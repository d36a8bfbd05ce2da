from django.urls import path

from . import telegram, views

urlpatterns = [
    path("notifications/event-types/", views.EventTypeListApi.as_view(), name="notifications-event-types"),
    path("notifications/subscriptions/", views.SubscriptionListCreateApi.as_view(), name="notifications-subscriptions"),
    path(
        "notifications/subscriptions/<int:subscription_id>/",
        views.SubscriptionDetailApi.as_view(),
        name="notifications-subscription",
    ),
    path(
        "notifications/subscriptions/<int:subscription_id>/test/",
        views.SubscriptionTestApi.as_view(),
        name="notifications-subscription-test",
    ),
    path("notifications/webhooks/", views.WebhookListCreateApi.as_view(), name="notifications-webhooks"),
    path("notifications/webhooks/<int:webhook_id>/", views.WebhookDetailApi.as_view(), name="notifications-webhook"),
    path(
        "notifications/webhooks/<int:webhook_id>/rotate/",
        views.WebhookRotateApi.as_view(),
        name="notifications-webhook-rotate",
    ),
    path("notifications/deliveries/", views.DeliveryListApi.as_view(), name="notifications-deliveries"),
    path(
        "notifications/deliveries/<int:delivery_id>/retry/",
        views.DeliveryRetryApi.as_view(),
        name="notifications-delivery-retry",
    ),
    path("notifications/inbox/", views.InAppListApi.as_view(), name="notifications-inbox"),
    path(
        "notifications/telegram/bots/", telegram.TelegramBotListCreateApi.as_view(), name="notifications-telegram-bots"
    ),
    path(
        "notifications/telegram/bots/<int:bot_id>/",
        telegram.TelegramBotDetailApi.as_view(),
        name="notifications-telegram-bot",
    ),
    path(
        "notifications/telegram/chats/",
        telegram.TelegramChatListCreateApi.as_view(),
        name="notifications-telegram-chats",
    ),
    path(
        "notifications/telegram/chats/<int:chat_id>/",
        telegram.TelegramChatDetailApi.as_view(),
        name="notifications-telegram-chat",
    ),
    path("notifications/telegram/link/", telegram.TelegramLinkApi.as_view(), name="notifications-telegram-link"),
]

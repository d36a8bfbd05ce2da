from .telegram_helpers import eager_tasks, sandbox  # noqa: F401 - fixtures of the Telegram tests

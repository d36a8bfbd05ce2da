from .telegram_helpers import sandbox  # noqa: F401 - the Telegram tests' sandbox Bot API

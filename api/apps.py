from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "api"
    verbose_name = "Api"

    def ready(self):
        strict_char_fields()


def strict_char_fields() -> None:
    """DRF's CharField (and its subclasses: e-mail, slug, URL, regex) turns a JSON number into a
    string. The API documents those fields as strings, so a number there is a client's mistake:
    refuse it (400 ``invalid_input``, the field named) instead of storing ``"-7318002152206827.0"``.
    Query parameters and form fields are always strings, so only JSON bodies are affected.
    ``max_length`` holds for what was sent, before whitespace is trimmed (as the document says)."""
    from rest_framework import serializers

    if getattr(serializers.CharField, "_strict", False):
        return
    lenient = serializers.CharField.to_internal_value
    lenient_run = serializers.CharField.run_validation

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return lenient(self, data)

    def run_validation(self, data=serializers.empty):
        # before DRF's own: it returns "" for a whitespace-only value without a length check
        if isinstance(data, str) and self.max_length is not None and len(data) > self.max_length:
            self.fail("max_length", max_length=self.max_length)
        return lenient_run(self, data)

    serializers.CharField.to_internal_value = to_internal_value
    serializers.CharField.run_validation = run_validation
    serializers.CharField._strict = True

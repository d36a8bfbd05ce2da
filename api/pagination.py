from rest_framework.pagination import CursorPagination

from api.errors import ApplicationError


class StrictPageSize:
    """``page_size`` given but not a whole number within 1..``max_page_size``: 400
    ``invalid_page_size`` (DRF would quietly fall back to the default page). Empty: the default."""

    def get_page_size(self, request):
        raw = request.query_params.get(self.page_size_query_param or "", None)
        if not raw:
            return self.page_size
        if not raw.isdigit() or not 1 <= int(raw) <= self.max_page_size:
            raise ApplicationError(
                "invalid_page_size",
                f"page_size is a whole number from 1 to {self.max_page_size}.",
                {"page_size": raw[:20], "max": self.max_page_size},
            )
        return int(raw)


class CreatedCursorPagination(StrictPageSize, CursorPagination):
    """Stable, index-friendly pagination: newest first, opaque ``cursor`` parameter."""

    ordering = ("-created_at", "-id")
    page_size_query_param = "page_size"
    max_page_size = 500

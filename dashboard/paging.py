"""Every dashboard list pages, searches and filters the same way.

A view describes its list once and hands the result to the shared templates::

    keys = ListSpec(
        "keys", "API keys",
        search=Search(("name", "prefix"), "Name or prefix"),
        filters=(Choice("state", "State", (("active", "Active"), ("revoked", "Revoked")), apply=_by_state),
                 Dates("created_at", "Created")),
    ).apply(request, api_key_list(tenant=request.tenant))

    {% include "dashboard/_list_filters.html" with lv=keys %}   the GET form: search, filters, rows a page
    {% for k in keys.rows %} … {% endfor %}
    {% include "dashboard/_list_pager.html" with lv=keys %}     page X of Y, previous / next
    {% include "dashboard/_list_nomatch.html" with lv=keys %}   "no API keys match these filters — clear filters"

The state lives in the query string (``q``, the filters' names, ``from``/``to``, ``per_page``,
``page``; a ``prefix`` keeps two lists on one page apart), so a filtered page is a bookmark and
works without JavaScript. The form and the pager links also carry htmx attributes: with htmx the
list's own container is swapped (``hx-select`` picks it out of the answer, whole page or panel),
the URL is pushed and the list shows a loading indicator. A value that makes no sense
(``?state=lost``, ``?from=yesterday``) is ignored and said so above the list, never a 500.

Rows are a QuerySet (search is ``icontains`` on the named fields, a filter a field lookup) or a
list the view computed (search reads the same names as attributes or keys; a filter needs
``apply``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import reduce
from operator import or_
from typing import Any

from django.core.paginator import Page, Paginator
from django.db.models import Q, QuerySet
from django.utils.html import format_html

PER_PAGE_CHOICES = (10, 25, 50, 100)
PER_PAGE = 25
MAX_QUERY = 100  # characters of a search kept


@dataclass(frozen=True)
class Search:
    """The search box: a case-insensitive substring of any of ``fields`` (``a__b`` follows relations)."""

    fields: tuple[str, ...]
    label: str = "Search"
    placeholder: str = ""


@dataclass(frozen=True)
class Choice:
    """A select of fixed values: ``field`` (default: the name) is filtered for equality, or a
    value keeps the rows of its ``when[value]`` (a ``Q``), or ``apply(rows, value)`` does what the
    value means (a list of rows the view computed)."""

    name: str
    label: str
    options: Sequence[tuple[str, str]]
    field: str | None = None
    apply: Callable[[Any, str], Any] | None = None
    when: Mapping[str, Q] | None = None

    @classmethod
    def either(cls, name: str, label: str, yes: tuple[str, str], no: tuple[str, str], q: Q) -> Choice:
        """Two values: ``yes`` keeps the rows matching ``q``, ``no`` the others."""
        return cls(name, label, (yes, no), when={yes[0]: q, no[0]: ~q})

    @property
    def values(self) -> list[str]:
        return [str(v) for v, _ in self.options]

    def filter(self, rows, value: str):
        if self.apply:
            return self.apply(rows, value)
        if self.when:
            return rows.filter(self.when[value])
        return _equal(rows, self.field or self.name, value)


@dataclass(frozen=True)
class Dates:
    """A date range (``from`` / ``to``, both days included) on a date or datetime field."""

    field: str
    label: str = "Date"


@dataclass
class ListView:
    """One list's page, as the templates read it."""

    name: str
    noun: str
    page: Page
    rows: list
    q: str
    values: dict[str, str]
    active: bool
    problems: list[str]
    controls: list[dict]
    hidden: list[tuple[str, str]]
    page_query: str
    clear_url: str
    page_param: str
    per_page: int
    dom_id: str = ""
    htmx: bool = True

    @property
    def total(self) -> int:
        return self.page.paginator.count

    @property
    def main_controls(self) -> list[dict]:
        """The search box and the selects, always shown."""
        return [c for c in self.controls if not c.get("more")]

    @property
    def more_controls(self) -> list[dict]:
        """Date ranges and rows a page, folded under "More filters" unless one is set."""
        return [c for c in self.controls if c.get("more")]

    @property
    def more_open(self) -> bool:
        return any(c["value"] for c in self.more_controls)

    @property
    def hx(self) -> str:
        """The htmx attributes of a link or form that reloads this list in place."""
        return format_html(
            'hx-target="#{0}" hx-select="#{0}" hx-swap="outerHTML" hx-push-url="true" hx-indicator="#{0}-loading"',
            self.dom_id,
        )

    def page_url(self, number: int) -> str:
        return f"?{self.page_query}&{self.page_param}={number}" if self.page_query else f"?{self.page_param}={number}"

    @property
    def previous_url(self) -> str:
        return self.page_url(self.page.previous_page_number()) if self.page.has_previous() else ""

    @property
    def next_url(self) -> str:
        return self.page_url(self.page.next_page_number()) if self.page.has_next() else ""


@dataclass(frozen=True)
class ListSpec:
    """What a list can be searched and filtered by. ``noun``: what the rows are, for the texts."""

    name: str
    noun: str
    search: Search | None = None
    filters: tuple[Choice | Dates, ...] = ()
    prefix: str = ""
    per_page: int = PER_PAGE
    htmx: bool = True  # False: the form and links load whole pages (a page whose scripts own the list)

    def _key(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def own_keys(self) -> set[str]:
        keys = {self._key("page"), self._key("per_page")}
        if self.search:
            keys.add(self._key("q"))
        for f in self.filters:
            keys |= {self._key("from"), self._key("to")} if isinstance(f, Dates) else {self._key(f.name)}
        return keys

    def apply(self, request, rows) -> ListView:
        get = request.GET
        problems: list[str] = []
        values: dict[str, str] = {}
        controls: list[dict] = []
        dom = f"list-{self.name}"

        q = ""
        if self.search:
            q = " ".join(get.get(self._key("q"), "").split())[:MAX_QUERY]
            if q:
                rows = _search(rows, self.search.fields, q)
            controls.append(
                {"kind": "search", "name": self._key("q"), "id": f"{dom}-q", "label": self.search.label, "value": q,
                 "placeholder": self.search.placeholder}
            )  # fmt: skip

        for f in self.filters:
            if isinstance(f, Dates):
                rows = self._dates(get, f, rows, values, problems, controls, dom)
                continue
            raw = get.get(self._key(f.name), "").strip()
            if raw and raw not in f.values:
                shown = ", ".join(_option_text(v, label) for v, label in f.options) or "none"
                problems.append(f"Ignored {f.label.lower()} “{raw[:40]}”: it is one of {shown}.")
                raw = ""
            if raw:
                values[f.name] = raw
                rows = f.filter(rows, raw)
            controls.append(
                {"kind": "select", "name": self._key(f.name), "id": f"{dom}-{f.name}", "label": f.label, "value": raw,
                 "options": [(str(v), label) for v, label in f.options]}
            )  # fmt: skip

        per_page = self.per_page
        raw_size = get.get(self._key("per_page"), "")
        if raw_size:
            if raw_size.isdigit() and int(raw_size) in PER_PAGE_CHOICES:
                per_page = int(raw_size)
            else:
                sizes = ", ".join(map(str, PER_PAGE_CHOICES))
                problems.append(f"Ignored rows a page “{raw_size[:10]}”: it is one of {sizes}.")
        sizes = [("" if n == self.per_page else str(n), str(n)) for n in PER_PAGE_CHOICES]  # the default: no param
        controls.append(
            {"kind": "select", "name": self._key("per_page"), "id": f"{dom}-per-page", "label": "Rows a page",
             "value": "" if per_page == self.per_page else str(per_page), "options": sizes, "required": True,
             "more": True}
        )  # fmt: skip

        page = Paginator(rows, per_page).get_page(get.get(self._key("page")))
        own = self.own_keys()
        others = [(k, v) for k in get for v in get.getlist(k) if k not in own]
        keep = get.copy()
        keep.pop(self._key("page"), None)
        cleared = get.copy()
        for k in own:
            cleared.pop(k, None)
        return ListView(
            name=self.name, noun=self.noun, page=page, rows=list(page.object_list), q=q, values=values,
            active=bool(q or values), problems=problems, controls=controls, hidden=others,
            page_query=keep.urlencode(), clear_url=f"?{cleared.urlencode()}" if cleared else request.path,
            page_param=self._key("page"), per_page=per_page, dom_id=dom, htmx=self.htmx,
        )  # fmt: skip

    def _dates(self, get, f: Dates, rows, values, problems, controls, dom):
        bounds = {}
        for end, word in (("from", "from"), ("to", "until")):
            raw = get.get(self._key(end), "").strip()
            if raw:
                try:
                    bounds[end] = dt.date.fromisoformat(raw)
                except ValueError:
                    problems.append(f"Ignored the {f.label.lower()} {word} “{raw[:20]}”: write a date as YYYY-MM-DD.")
        if "from" in bounds and "to" in bounds and bounds["from"] > bounds["to"]:
            a, b = bounds["from"], bounds["to"]
            problems.append(f"Ignored the {f.label.lower()} range: “from” {a} is after “to” {b}.")
            bounds = {}
        for end, word in (("from", "from"), ("to", "to")):
            value = bounds.get(end)
            if value is not None:
                values[end] = value.isoformat()
                rows = _date_bound(rows, f.field, value, end)
            controls.append(
                {"kind": "date", "name": self._key(end), "id": f"{dom}-{end}", "label": f"{f.label} {word}",
                 "value": value.isoformat() if value else "", "more": True}
            )  # fmt: skip
        return rows


def _option_text(value, label: str) -> str:
    """How a problem names an allowed value: what goes in the URL, and its label when that says more."""
    if str(value).casefold() == str(label).casefold():
        return str(value)
    return f"{value}: {label}" if "(" in str(label) else f"{value} ({label})"


def _search(rows, fields: tuple[str, ...], q: str):
    if isinstance(rows, QuerySet):
        return rows.filter(reduce(or_, (Q(**{f"{f}__icontains": q}) for f in fields)))
    needle = q.casefold()
    return [r for r in rows if any(needle in str(_read(r, f) or "").casefold() for f in fields)]


def _equal(rows, name: str, value: str):
    if isinstance(rows, QuerySet):
        return rows.filter(**{name: value})
    return [r for r in rows if str(_read(r, name)) == value]


def _date_bound(rows, name: str, day: dt.date, end: str):
    if isinstance(rows, QuerySet):
        model_field = rows.model._meta.get_field(name.split("__")[0])
        lookup = name if model_field.get_internal_type() == "DateField" else f"{name}__date"
        return rows.filter(**{f"{lookup}__{'gte' if end == 'from' else 'lte'}": day})
    out = []
    for r in rows:
        value = _read(r, name)
        if value is None:
            continue
        if isinstance(value, str):
            value = dt.date.fromisoformat(value[:10])
        elif isinstance(value, dt.datetime):
            value = value.date()
        if (value >= day) if end == "from" else (value <= day):
            out.append(r)
    return out


def _read(row, path: str):
    for part in path.split("__"):
        if row is None:
            return None
        row = row.get(part) if isinstance(row, dict) else getattr(row, part, None)
    return row

"""Clone the tenant template schema in one statement batch, in time that does not grow with the
number of tenants.

django-tenants' ``clone_schema`` (a 4,600-line PL/pgSQL function, re-created on every call) looks
the catalog up through views such as ``pg_indexes`` and ``information_schema.columns``, several
times per table. Those scans grow with the whole database's catalog: on the 2-core machine a clone
took 0.9 s with 3 tenants and 3.7 s with 35 (``python -m benchmarks.tenants``, README "Scale").

Here the template's DDL is read once per process and template version (the template's
``django_migrations`` and the schema's oid: every schema change comes with a migration), with the
catalog's own ``pg_get_*def`` functions, and each clone replays it as one batch:

    CREATE SCHEMA; its functions; every table ``LIKE`` the template's (columns, defaults, identity,
    CHECK constraints, storage, statistics); the template's rows (``django_migrations``, content
    types, seeded rows) and sequence positions; primary keys and unique constraints under their
    names; the other indexes; foreign keys; triggers.

Index and constraint names are the template's (later migrations address them by name). A template
holding anything else (views, types, domains, sequences of their own, partitions, inheritance,
generated columns, row security, rules, comments, reloptions, unlogged tables, disabled triggers,
aggregates) is cloned by django-tenants' function instead: :func:`schema_clone` never guesses.
The app role's grants are applied afterwards by the caller (``roles.schema_grant_if_enabled``), as
for the template itself. tests/tenants/test_schema_clone.py compares both clones object by object.
"""

from __future__ import annotations

import re
import threading

from django.db import connections
from django_tenants.clone import CLONE_SCHEMA_FUNCTION

from . import roles

TOKEN = "__ati_clone_target__"
_cache: dict[tuple, list[str] | None] = {}
_lock = threading.Lock()

# every object kind the batch does not recreate; any of them in the template -> the generic clone.
# NOT NULL constraints ('n', catalogued since PostgreSQL 18) are always copied by LIKE.
_UNSUPPORTED = """
SELECT 'relation ' || c.relname || ' of kind ' || c.relkind::text FROM pg_class c
 WHERE c.relnamespace = %(ns)s AND (c.relkind NOT IN ('r', 'i', 'S') OR c.relispartition
       OR c.relpersistence <> 'p' OR c.reloptions IS NOT NULL OR c.relrowsecurity OR c.relkind = 'S' AND NOT EXISTS (
           SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'i'))
UNION ALL SELECT 'generated column ' || a.attname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
 WHERE c.relnamespace = %(ns)s AND a.attgenerated <> ''
UNION ALL SELECT 'inheritance' FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE c.relnamespace = %(ns)s
UNION ALL SELECT 'type ' || t.typname FROM pg_type t
 WHERE t.typnamespace = %(ns)s AND NOT (t.typtype = 'c' AND EXISTS (
       SELECT 1 FROM pg_class c WHERE c.oid = t.typrelid AND c.relkind = 'r'))
   AND NOT (t.typcategory = 'A' AND EXISTS (
       SELECT 1 FROM pg_type e JOIN pg_class c ON c.oid = e.typrelid WHERE e.oid = t.typelem AND c.relkind = 'r'))
UNION ALL SELECT 'routine ' || p.proname FROM pg_proc p WHERE p.pronamespace = %(ns)s AND p.prokind <> 'f'
UNION ALL SELECT 'comment' FROM pg_description d JOIN pg_class c ON c.oid = d.objoid
 WHERE d.classoid = 'pg_class'::regclass AND c.relnamespace = %(ns)s
UNION ALL SELECT 'rule ' || r.rulename FROM pg_rewrite r JOIN pg_class c ON c.oid = r.ev_class
 WHERE c.relnamespace = %(ns)s
UNION ALL SELECT 'policy ' || p.polname FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid
 WHERE c.relnamespace = %(ns)s
UNION ALL SELECT 'trigger ' || t.tgname || ' not plainly enabled' FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
 WHERE c.relnamespace = %(ns)s AND NOT t.tgisinternal AND t.tgenabled <> 'O'
UNION ALL SELECT 'constraint ' || k.conname || ' of kind ' || k.contype::text FROM pg_constraint k
 WHERE k.connamespace = %(ns)s AND k.contype NOT IN ('p', 'u', 'f', 'c', 'n')
UNION ALL SELECT 'clustered or replica-identity index ' || i.indexrelid::regclass::text FROM pg_index i
 JOIN pg_class c ON c.oid = i.indrelid WHERE c.relnamespace = %(ns)s AND (i.indisclustered OR i.indisreplident)
UNION ALL SELECT 'collation ' || collname FROM pg_collation WHERE collnamespace = %(ns)s
UNION ALL SELECT 'operator ' || oprname FROM pg_operator WHERE oprnamespace = %(ns)s
UNION ALL SELECT 'extension ' || extname FROM pg_extension WHERE extnamespace = %(ns)s
"""


class Unsupported(Exception):
    """The template holds an object the batch does not recreate."""


def _qualified(text: str, source: str) -> str:
    """``source.`` (as the catalog prints it with an empty search_path) -> the target's token."""
    return re.sub(rf'(?<![\w"$]){re.escape(source)}\.', TOKEN + ".", text)


def _constraint(row: tuple[str, str, str], source: str) -> str:
    table, name, definition = row
    return f"ALTER TABLE {_qualified(table, source)} ADD CONSTRAINT {name} {_qualified(definition, source)}"


def _fingerprint(cur, source: str) -> tuple:
    s = roles.quote(source)
    cur.execute(
        f"SELECT %s::regnamespace::oid, (SELECT count(*) || ':' || coalesce(max(id), 0) FROM {s}.django_migrations)",
        [source],
    )
    return tuple(cur.fetchone())


def _generate(cur, source: str, ns: int) -> list[str]:
    """The template's DDL, the target schema written as TOKEN; raises Unsupported."""
    cur.execute(_UNSUPPORTED, {"ns": ns})
    found = sorted({row[0] for row in cur.fetchall()})
    if found:
        raise Unsupported(", ".join(found[:5]))
    s = roles.quote(source)
    target = TOKEN
    out = [f"CREATE SCHEMA {target}"]
    # the catalog prints names qualified when their schema is not on the path: empty it
    cur.execute("SELECT set_config('search_path', '', false)")
    cur.execute("SELECT pg_get_functiondef(p.oid) FROM pg_proc p WHERE p.pronamespace = %s ORDER BY p.oid", [ns])
    out += [_qualified(row[0], source) for row in cur.fetchall()]
    cur.execute(
        "SELECT c.oid, c.relname FROM pg_class c WHERE c.relnamespace = %s AND c.relkind = 'r' ORDER BY c.oid", [ns]
    )
    tables = cur.fetchall()
    for _, name in tables:
        t = roles.quote(name) if re.fullmatch(r"[a-z_][a-z0-9_]*", name) else '"' + name.replace('"', '""') + '"'
        out.append(
            f"CREATE TABLE {target}.{t} (LIKE {s}.{t} INCLUDING DEFAULTS INCLUDING CONSTRAINTS "
            "INCLUDING STORAGE INCLUDING COMPRESSION INCLUDING STATISTICS)"
        )
        out.append(f"INSERT INTO {target}.{t} SELECT * FROM {s}.{t}")
    # identity columns: their sequences under the template's names, types and options, where the
    # template's are (the copied rows' ids are taken)
    cur.execute(
        "SELECT quote_ident(c.relname), quote_ident(a.attname), a.attidentity, quote_ident(seq.relname), "
        "s.seqstart, s.seqincrement, s.seqmin, s.seqmax, s.seqcache, s.seqcycle, "
        "seq.oid::regclass::text FROM pg_class c "
        "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attidentity <> '' AND NOT a.attisdropped "
        "JOIN pg_depend d ON d.refobjid = c.oid AND d.refobjsubid = a.attnum AND d.deptype = 'i' "
        "AND d.classid = 'pg_class'::regclass JOIN pg_class seq ON seq.oid = d.objid AND seq.relkind = 'S' "
        "JOIN pg_sequence s ON s.seqrelid = seq.oid WHERE c.relnamespace = %s ORDER BY c.oid, a.attnum",
        [ns],
    )
    for table, column, kind, seq, start, step, low, high, cache, cycle, source_seq in cur.fetchall():
        out.append(
            f"ALTER TABLE {target}.{table} ALTER COLUMN {column} ADD GENERATED "
            f"{'ALWAYS' if kind == 'a' else 'BY DEFAULT'} AS IDENTITY (SEQUENCE NAME {target}.{seq} "
            f"START WITH {start} INCREMENT BY {step} MINVALUE {low} MAXVALUE {high} CACHE {cache} "
            f"{'' if cycle else 'NO '}CYCLE)"
        )
        literal = f"{target}.{seq}".replace("'", "''")
        out.append(f"SELECT setval('{literal}', q.last_value, q.is_called) FROM {source_seq} q")
    # primary keys and unique constraints (their indexes, under the template's names), then the
    # other indexes, then foreign keys
    cur.execute(
        "SELECT k.conrelid::regclass::text, quote_ident(k.conname), pg_get_constraintdef(k.oid) FROM pg_constraint k "
        "WHERE k.connamespace = %s AND k.contype IN ('p', 'u') ORDER BY k.contype, k.oid",
        [ns],
    )
    out += [
        f"ALTER TABLE {_qualified(t, source)} ADD CONSTRAINT {n} {_qualified(d, source)}" for t, n, d in cur.fetchall()
    ]
    cur.execute(
        "SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid "
        "WHERE c.relnamespace = %s AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid "
        "AND k.conrelid = i.indrelid AND k.contype IN ('p', 'u', 'x')) ORDER BY i.indexrelid",
        [ns],
    )
    out += [_qualified(row[0], source) for row in cur.fetchall()]
    cur.execute(
        "SELECT k.conrelid::regclass::text, quote_ident(k.conname), pg_get_constraintdef(k.oid) FROM pg_constraint k "
        "WHERE k.connamespace = %s AND k.contype = 'f' ORDER BY k.oid",
        [ns],
    )
    out += [
        f"ALTER TABLE {_qualified(t, source)} ADD CONSTRAINT {n} {_qualified(d, source)}" for t, n, d in cur.fetchall()
    ]
    cur.execute(
        "SELECT pg_get_triggerdef(t.oid) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
        "WHERE c.relnamespace = %s AND NOT t.tgisinternal ORDER BY t.oid",
        [ns],
    )
    out += [_qualified(row[0], source) for row in cur.fetchall()]
    return out


def _statements(cur, source: str, database: str) -> list[str] | None:
    """The cached batch for ``source`` as it is now; None when it needs the generic clone."""
    fingerprint = _fingerprint(cur, source)
    key = (database, source, fingerprint)
    with _lock:
        if key in _cache:
            return _cache[key]
    try:
        statements = _generate(cur, source, fingerprint[0])
    except Unsupported:
        statements = None
    with _lock:
        if len(_cache) > 8:
            _cache.clear()
        _cache[key] = statements
    return statements


def schema_clone(*, alias: str, source: str, target: str) -> str:
    """Create ``target`` as a copy of ``source`` (structure and rows) on connection ``alias``, as its
    current user, inside the caller's transaction. Returns "batch" or "clone_schema" (the generic
    django-tenants function, for templates holding objects the batch does not recreate)."""
    conn = connections[alias]
    with conn.cursor() as cur:
        cur.execute("SHOW search_path")
        path = cur.fetchone()[0]
        try:
            statements = _statements(cur, source, conn.settings_dict["NAME"])
        finally:  # the generation empties it; django-tenants remembers what it set
            cur.execute("SELECT set_config('search_path', %s, false)", [path])
        if statements is None:
            cur.execute("SELECT current_user")
            cur.execute(CLONE_SCHEMA_FUNCTION.format(db_user=cur.fetchone()[0]))
            cur.execute("SELECT clone_schema(%s, %s, 'DATA')", [source, target])
            return "clone_schema"
        quoted = roles.quote(target)
        cur.execute(";\n".join(s.replace(TOKEN, quoted) for s in statements))
    return "batch"


def reset() -> None:
    """Tests: forget the generated batches."""
    with _lock:
        _cache.clear()

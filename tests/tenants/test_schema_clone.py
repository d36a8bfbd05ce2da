"""The template clone (tenants/db/clone.py): the one-batch clone builds the same schema as
django-tenants' clone_schema, object by object, and falls back to it for what it does not recreate."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.db import connection
from django_tenants.clone import CLONE_SCHEMA_FUNCTION

from tenants.db import clone, roles
from tenants.services import tenant_template_ensure

pytestmark = pytest.mark.django_db

SNAPSHOT = {
    "columns": """
        SELECT c.relname, row_number() OVER (PARTITION BY c.relname ORDER BY a.attnum), a.attname,
               format_type(a.atttypid, a.atttypmod), a.attnotnull, a.attidentity,
               a.attgenerated, a.attstorage, a.attcompression, a.attcollation,
               replace(pg_get_expr(d.adbin, d.adrelid), %(schema)s || '.', '')
          FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
          LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
         WHERE c.relnamespace = %(schema)s::regnamespace AND c.relkind = 'r'""",
    "relations": """
        SELECT relname, relkind, relpersistence, reloptions FROM pg_class
         WHERE relnamespace = %(schema)s::regnamespace""",
    "constraints": """
        SELECT c.relname, k.conname, k.contype, k.condeferrable, k.condeferred, k.convalidated,
               replace(pg_get_constraintdef(k.oid), %(schema)s || '.', '')
          FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid WHERE k.connamespace = %(schema)s::regnamespace""",
    "indexes": """
        SELECT c.relname, replace(pg_get_indexdef(i.indexrelid), %(schema)s || '.', '')
          FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relnamespace = %(schema)s::regnamespace""",
    "triggers": """
        SELECT t.tgname, t.tgenabled, replace(pg_get_triggerdef(t.oid), %(schema)s || '.', '')
          FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
         WHERE c.relnamespace = %(schema)s::regnamespace AND NOT t.tgisinternal""",
    "functions": """
        SELECT p.proname, replace(pg_get_functiondef(p.oid), %(schema)s || '.', '')
          FROM pg_proc p WHERE p.pronamespace = %(schema)s::regnamespace""",
    "sequences": """
        SELECT c.relname, s.seqstart, s.seqincrement, s.seqmax, s.seqmin, s.seqcache, s.seqcycle, s.seqtypid
          FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid WHERE c.relnamespace = %(schema)s::regnamespace""",
    "grants": """
        SELECT c.relname, c.relacl::text FROM pg_class c WHERE c.relnamespace = %(schema)s::regnamespace""",
}


def _snapshot(schema: str) -> dict[str, list]:
    out = {}
    with connection.cursor() as cur:
        for name, sql in SNAPSHOT.items():
            cur.execute(sql, {"schema": schema})
            out[name] = sorted(map(tuple, cur.fetchall()), key=repr)
        cur.execute(
            "SELECT relname FROM pg_class WHERE relnamespace = %s::regnamespace AND relkind = 'r' ORDER BY 1", [schema]
        )
        rows = {}
        for (table,) in cur.fetchall():
            cur.execute(f"SELECT * FROM {roles.quote(schema)}.{roles.quote(table)} ORDER BY 1")
            rows[table] = cur.fetchall()
        out["rows"] = rows
        cur.execute(
            "SELECT c.relname FROM pg_class c WHERE c.relnamespace = %s::regnamespace AND c.relkind = 'S'", [schema]
        )
        values = {}
        for (seq,) in cur.fetchall():
            cur.execute(f"SELECT last_value, is_called FROM {roles.quote(schema)}.{roles.quote(seq)}")
            values[seq] = cur.fetchone()
        out["sequence values"] = values
    return out


def _generic_clone(alias: str, source: str, target: str) -> None:
    with connection.cursor() as cur:
        cur.execute("SELECT current_user")
        cur.execute(CLONE_SCHEMA_FUNCTION.format(db_user=cur.fetchone()[0]))
        cur.execute("SELECT clone_schema(%s, %s, 'DATA')", [source, target])


def test_batch_clone_is_the_template_object_by_object():
    # given the migrated template
    source = tenant_template_ensure().schema_name
    clone.reset()
    with roles.owner_atomic() as alias:
        # when it is cloned
        how = clone.schema_clone(alias=alias, source=source, target="t_clone_batch")
        with connection.cursor() as cur:
            roles.schema_grant_if_enabled(cur, "t_clone_batch")
        # then the batch ran, and every relation (same names), column, default, constraint, index,
        # trigger, function, grant, row and sequence position is the template's
        assert how == "batch"
        batch, template = _snapshot("t_clone_batch"), _snapshot(source)
        assert batch["relations"] and batch["triggers"] and batch["rows"]["django_migrations"]
        for part in template:
            if isinstance(template[part], dict):
                assert batch[part] == template[part], part
            else:  # what only one side has
                only = (
                    sorted(set(batch[part]) - set(template[part]), key=repr),
                    sorted(set(template[part]) - set(batch[part]), key=repr),
                )
                assert only == ([], []), f"{part}: only the clone {only[0]}; only the template {only[1]}"
        # and a cloned schema takes new rows after the copied ones (sequence positions kept)
        with connection.cursor() as cur:
            cur.execute(
                "INSERT INTO t_clone_batch.django_migrations (app, name, applied) VALUES ('x', 'y', now()) RETURNING id"
            )
            new_id = cur.fetchone()[0]
        assert new_id > max(row[0] for row in batch["rows"]["django_migrations"])
        connection.set_schema_to_public()


def test_django_tenants_clone_schema_renames_named_unique_constraints_which_the_batch_keeps():
    """Why not clone_schema, besides its speed: later migrations drop constraints by name."""
    source = tenant_template_ensure().schema_name
    with roles.owner_atomic() as alias:
        _generic_clone(alias, source, "t_clone_generic")
        clone.schema_clone(alias=alias, source=source, target="t_clone_batch")
        with connection.cursor() as cur:
            cur.execute(
                "SELECT connamespace::regnamespace::text FROM pg_constraint WHERE conname = 'anomaly_once' "
                "AND connamespace IN ('t_clone_generic'::regnamespace, 't_clone_batch'::regnamespace, "
                "%s::regnamespace)",
                [source],
            )
            assert sorted(r[0] for r in cur.fetchall()) == sorted([source, "t_clone_batch"])
        connection.set_schema_to_public()


def test_clone_leaves_search_path_as_it_found_it_and_caches_the_batch():
    source = settings.TENANT_TEMPLATE_SCHEMA
    tenant_template_ensure()
    clone.reset()
    with roles.owner_atomic() as alias, connection.cursor() as cur:
        cur.execute("SET search_path = public")
        clone.schema_clone(alias=alias, source=source, target="t_clone_one")
        cur.execute("SHOW search_path")
        assert cur.fetchone()[0] == "public"
        assert len(clone._cache) == 1
        clone.schema_clone(alias=alias, source=source, target="t_clone_two")
        assert len(clone._cache) == 1
        cur.execute("SELECT count(*) FROM pg_class WHERE relnamespace = 't_clone_two'::regnamespace")
        assert cur.fetchone()[0] > 0


def test_a_template_with_an_object_the_batch_does_not_recreate_gets_the_generic_clone():
    # given a source schema holding a view
    clone.reset()
    with roles.owner_atomic() as alias, connection.cursor() as cur:
        cur.execute("CREATE SCHEMA t_clone_src")
        cur.execute(
            "CREATE TABLE t_clone_src.django_migrations (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY)"
        )
        cur.execute("CREATE VIEW t_clone_src.v AS SELECT id FROM t_clone_src.django_migrations")
        # when it is cloned, then django-tenants' function does it, view included
        assert clone.schema_clone(alias=alias, source="t_clone_src", target="t_clone_dst") == "clone_schema"
        cur.execute("SELECT count(*) FROM pg_class WHERE relnamespace = 't_clone_dst'::regnamespace AND relkind = 'v'")
        assert cur.fetchone()[0] == 1

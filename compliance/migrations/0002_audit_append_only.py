from django.db import migrations

SQL = """
CREATE OR REPLACE FUNCTION compliance_audit_append_only() RETURNS trigger AS $$
BEGIN
  RAISE EXCEPTION 'audit records are append-only (% refused)', TG_OP;
END $$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS compliance_auditrecord_append_only ON compliance_auditrecord;
CREATE TRIGGER compliance_auditrecord_append_only BEFORE UPDATE OR DELETE ON compliance_auditrecord
  FOR EACH ROW EXECUTE FUNCTION compliance_audit_append_only();
"""
REVERSE = """
DROP TRIGGER IF EXISTS compliance_auditrecord_append_only ON compliance_auditrecord;
DROP FUNCTION IF EXISTS compliance_audit_append_only();
"""


class Migration(migrations.Migration):
    dependencies = [("compliance", "0001_initial")]
    operations = [migrations.RunSQL(SQL, REVERSE)]

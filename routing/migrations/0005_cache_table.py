"""Create the database cache table (the shared cache for webhook-rule tokens when there is no
Redis) as part of `migrate`, so no deployment can forget `createcachetable`."""

from django.core.management import call_command
from django.db import migrations


def create_cache_table(apps, schema_editor):
    call_command("createcachetable", database=schema_editor.connection.alias, verbosity=0)


class Migration(migrations.Migration):
    dependencies = [("routing", "0004_job_match_order")]

    operations = [migrations.RunPython(create_cache_table, migrations.RunPython.noop)]

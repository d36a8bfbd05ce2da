"""Train a model synchronously, as a training job would on a worker (same code, same records)."""

import json
import sys

from django.core.management.base import BaseCommand, CommandError
from django_tenants.utils import schema_context

from api.errors import ApplicationError
from marketdata.models import Timeframe
from models_registry.ml import families as ml_families
from tenants.models import Tenant


class Command(BaseCommand):
    help = (
        "Run an AutoML training job now and register its version. Progress goes to stderr; stdout carries "
        'exactly one JSON document: {"model", "version", "no_edge", "report": {...}}. Example: python manage.py '
        "train_model --tenant demo --feature-set default --symbol BTC-USD --timeframe 1d --horizon 1 --trials 30 --json"
    )

    def add_arguments(self, parser):
        parser.add_argument("--tenant", required=True)
        parser.add_argument("--symbol", required=True)
        parser.add_argument("--timeframe", choices=Timeframe.values, help="May be left out when the symbol has one.")
        parser.add_argument("--feature-set", default="default", help="name or name@version")
        parser.add_argument("--model", help="Registered model name (default: <symbol>-<timeframe>-h<horizon>).")
        parser.add_argument("--target", default="direction", choices=["direction", "ternary", "return"])
        parser.add_argument("--horizon", type=int, default=1)
        parser.add_argument("--dead-band", type=float, default=0.0, help="For --target ternary.")
        parser.add_argument("--dead-band-unit", default="pct", choices=["pct", "atr"])
        parser.add_argument("--families", nargs="+", choices=list(ml_families.FAMILIES))
        parser.add_argument("--trials", type=int, default=30)
        parser.add_argument("--timeout", type=int, help="Seconds for the search.")
        parser.add_argument("--fee-bps", type=float, default=10.0)
        parser.add_argument("--json", action="store_true", help="(default) JSON on stdout; kept for scripts.")

    def handle(self, *args, **o):
        from models_registry.models import JobState
        from models_registry.services.training import training_job_create, training_job_run

        tenant = Tenant.objects.select_related("plan").filter(slug=o["tenant"], status=Tenant.Status.ACTIVE).first()
        if tenant is None:
            raise CommandError(f"No active tenant '{o['tenant']}'.")

        def echo(percent, message):
            bar = "#" * (percent // 5)
            sys.stderr.write(f"\r[{bar:<20}] {percent:3d}% {message[:60]:<60}")
            sys.stderr.flush()

        with schema_context(tenant.schema_name):
            try:
                name = o["model"] or f"{o['symbol']}-{o['timeframe'] or 'auto'}-h{o['horizon']}".lower()
                job, _ = training_job_create(
                    tenant=tenant,
                    actor="cli:train_model",
                    model_name=name,
                    symbol=o["symbol"],
                    feature_set=o["feature_set"],
                    timeframe=o["timeframe"],
                    target={
                        "kind": o["target"],
                        "horizon": o["horizon"],
                        "dead_band": o["dead_band"],
                        "dead_band_unit": o["dead_band_unit"],
                    },
                    families=o["families"],
                    n_trials=o["trials"],
                    timeout_seconds=o["timeout"],
                    fee_bps=o["fee_bps"],
                    enqueue=False,
                )
            except ApplicationError as exc:
                raise CommandError(f"{exc.code}: {exc.message}") from exc
            state = training_job_run(job_id=job.pk, echo=echo)
            sys.stderr.write("\n")
            job.refresh_from_db()
            if state != JobState.SUCCEEDED:
                raise CommandError(f"Training {state}: {job.error or job.message}")
            version = job.model_version
            self.stdout.write(
                json.dumps(
                    {
                        "model": version.model.name,
                        "version": version.version,
                        "no_edge": version.no_edge,
                        "job": str(job.pk),
                        "report": version.report,
                    }
                )
            )

"""Registry and training writes (see registry.py and training.py)."""

from .registry import (  # noqa: F401
    CHALLENGER,
    PRODUCTION,
    alias_remove,
    alias_set,
    circuit_set,
    model_deploy,
    model_rollback,
    model_settings_update,
    version_create,
    version_from_bundle,
    versions_prune,
)
from .training import (  # noqa: F401
    model_retrain,
    training_job_cancel,
    training_job_create,
    training_job_run,
    training_jobs_reap,
)

"""Errors of the live service and how each maps to an HTTP status."""

from __future__ import annotations

from bms_schema.errors import BMSError

#: The command that trains and registers every model.
PIPELINE_COMMAND = "uv run agent-driver/run_full_pipeline.py"


class ModelUnavailable(BMSError):
    """No version of a model is loaded (HTTP 503)."""

    def __init__(self, model: str, registry_name: str, detail: str | None = None):
        self.model = model
        self.registry_name = registry_name
        message = (
            f"no model yet: run the pipeline ({PIPELINE_COMMAND}) to train one "
            f"(model '{registry_name}' for /v1/{model} is not registered in this workspace)"
        )
        if detail:
            message += f"; last load attempt failed: {detail}"
        super().__init__(message)


class UnknownPrediction(BMSError, LookupError):
    """Feedback names prediction ids the service does not know (HTTP 404)."""


class UnknownAlert(BMSError, LookupError):
    """No alert with that id (HTTP 404)."""

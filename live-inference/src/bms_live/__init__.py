"""bms_live: FastAPI service over the latest registered BMS-Flux models.

``bms_live.app.create_app(settings)`` builds the app; ``bms_live.service.LiveService`` holds
the logic (model hub with atomic hot swap, per-cell history, feedback, drift, metrics).
"""

__version__ = "0.1.0"

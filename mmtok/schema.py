"""The base of every recipe schema. Torch-free: recipes, presets and family configs load without torch."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    """Every recipe section: unknown keys are errors, and every float must be finite (no inf / nan)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

"""The base of every request body: an unknown field is a 422 that names it, never ignored."""

from pydantic import BaseModel, ConfigDict


class RequestModel(BaseModel):
    """A request schema: fields not declared are refused (a typo must not earn 0 points
    with a 201)."""

    model_config = ConfigDict(extra="forbid")

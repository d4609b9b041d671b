"""What each of the studio's routes accepts, as pydantic models: a request of the wrong type, with a missing or null
field, an unknown field, or a value out of bounds is refused (422, one line) before a route runs.

Bounds: a path at most 4,096 characters, a class or run name 255, a reason 500; numbers within what a person could
mean. What a value must also satisfy on disk (a path inside the folder, a class name that is a plain folder name) is
checked where it is used (`workspace`), once, for the API and the page alike.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from transferlab.config import COMPARED, STRATEGIES, Strategy, parse_duration
from transferlab.errors import UsageError

PathText = Annotated[str, Field(min_length=1, max_length=4096)]
Name = Annotated[str, Field(min_length=1, max_length=255)]
Reason = Annotated[str, Field(max_length=500)]
Split = Literal["all", "train", "val"]
MAX_LISTED = 500  # photos in one page of a class


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class NewClass(_Request):
    name: Name


class Move(_Request):
    path: PathText
    to: Name
    reason: Reason | None = None


class Aside(_Request):
    path: PathText
    reason: Reason | None = None


class InboxPage(_Request):
    """A page of the Inbox as the person leaves it: the ticked photos go into `cls`, the unticked are not `cls`."""

    cls: Name
    accept: Annotated[list[PathText], Field(max_length=MAX_LISTED)] = []
    reject: Annotated[list[PathText], Field(max_length=MAX_LISTED)] = []
    new: bool = False  # `cls` is a new class, made from the ticked photos


class Undo(_Request):
    id: Annotated[str, Field(min_length=1, max_length=64)]


class SplitFolder(_Request):
    val_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.2
    seed: Annotated[int, Field(ge=0, le=2**31 - 1)] = 0


class Check(_Request):
    labels: bool = False
    shortcuts: bool = False


def _duration(text: str) -> str:
    try:
        parse_duration(text)
    except UsageError as error:
        raise ValueError(str(error)) from None
    return text


def _backbone(name: str) -> str:
    from transferlab.models.backbones import REGISTRY  # the registry alone: no torch

    if name != "auto" and not all(part in REGISTRY for part in name.split("+")):
        raise ValueError(f"no backbone '{name[:60]}' (see `transferlab backbones`)")
    return name


class TrainRequest(_Request):
    """What the Train view asks for: `fit` within a budget (the default), or `compare` of chosen cells."""

    mode: Literal["fit", "compare"] = "fit"
    budget: Annotated[str, Field(max_length=20), AfterValidator(_duration)] = "5m"
    strategies: Annotated[list[Strategy], Field(min_length=1, max_length=len(STRATEGIES))] = list(COMPARED)
    backbones: Annotated[list[Annotated[str, AfterValidator(_backbone)]], Field(max_length=8)] = []
    seeds: Annotated[int, Field(ge=1, le=20)] = 1
    epochs: Annotated[int, Field(ge=1, le=1000)] | None = None

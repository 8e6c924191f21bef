"""Read the YAML in configs/, each file checked against its schema when it is loaded.

A typo in a configuration must stop the build before anything is written, never change what is built
(`redistribution: Pointer` once published restricted pixels): every model forbids unknown keys, requires
every key the build reads, and lists the values it allows. The YAML's own dicts are returned, so the
schema checks the files without changing what the stages read.
"""

from __future__ import annotations

import argparse
import importlib
import types
import typing
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, RootModel, ValidationError, field_validator, model_validator

from build.errors import BuildError
from spinebench import CONFIGS_DIR, MODALITIES

PositiveInt = Annotated[int, Field(ge=1)]
Text = Annotated[str, Field(min_length=1)]


class ConfigError(BuildError):
    """A configs/ file that does not fit its schema: the message names the file, the key and what is allowed."""


class Strict(BaseModel):
    """No unknown keys, no coercion ("1" is not 1), and every key without a default must be present."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


# --- configs/sources.yaml ---------------------------------------------------------------------------------

class Source(Strict):
    name: Text
    modality: Literal[MODALITIES]  # type: ignore[valid-type]
    licence: Text
    url: Text
    redistribution: Literal["embed", "pointer"]  # embed: pixels are published; pointer: only the path


class Sources(Strict):
    buu: Source
    csxa: Source
    rsna: Source
    vindr: Source


# --- configs/profiles.yaml --------------------------------------------------------------------------------

class Imaging(Strict):
    max_side: PositiveInt
    shard_rows: PositiveInt
    percentile_window: Annotated[list[Annotated[float, Field(ge=0, le=100)]], Field(min_length=2, max_length=2)]

    @field_validator("percentile_window")
    @classmethod
    def _ordered(cls, window: list[float]) -> list[float]:
        if window[0] >= window[1]:
            raise ValueError(f"the low percentile must be below the high one, not {list(window)}")
        return window


RSNA_VIEWS = Literal["Sagittal T1", "Sagittal T2/STIR", "Axial T2"]
ITEM_FIELDS = Literal["disease", "source", "view", "modality", "region", "levels"]  # what mini may balance over
Share = Annotated[float, Field(gt=0, le=1)]


class LabelPolicy(Strict):
    rsna_grades: Annotated[list[Literal["Normal/Mild", "Moderate", "Severe", None]], Field(min_length=1)]
    multi_lesion: Literal["priority", "most_boxes", "per_lesion"] = "priority"  # build/labels.py
    rsna_normal_as_healthy: bool = False
    rsna_study_grades_on: list[RSNA_VIEWS] = []


class ItemSettings(Strict):
    library_per_disease: PositiveInt
    similarity: Literal["mean", "max"]
    exclude_present: bool
    modality_aware: bool
    option_sets: Literal["nearest", "balanced"] = "nearest"  # build/distractors.py
    candidates: PositiveInt = 6
    diagnosis_single_lesion: bool = False
    class_cap: Annotated[float, Field(gt=0)] | None = None
    diagnosis_skips_views: dict[Literal["buu", "csxa", "rsna", "vindr"], list[Text]] = {}


class Mini(Strict):
    diagnosis: Annotated[int, Field(ge=0)]
    localization: Annotated[int, Field(ge=0)]
    balance_diagnosis: Annotated[list[ITEM_FIELDS], Field(min_length=1)] = ["disease"]
    balance_localization: Annotated[list[ITEM_FIELDS], Field(min_length=1)] = ["disease"]
    max_share_diagnosis: Share | None = None
    max_share_localization: Share | None = None


class Profile(Strict):
    seed: Annotated[int, Field(ge=0)]
    imaging: Imaging
    labels: LabelPolicy
    items: ItemSettings
    mini: Mini


class Profiles(RootModel[dict[str, Profile]]):
    pass


# --- configs/labels.yaml ----------------------------------------------------------------------------------

class Disease(Strict):
    name: Text
    mesh: Annotated[str, Field(pattern=r"^D\d{6}$")] | None
    mesh_term: Text | None


class RawLabels(Strict):
    """Per source: raw label -> a disease of `diseases`, or "drop: <reason>" (checked by LabelFile)."""

    buu: dict[str, Text]
    csxa: dict[str, Text]
    rsna: dict[str, Text]
    vindr: dict[str, Text]


class LabelFile(Strict):
    diseases: Annotated[list[Disease], Field(min_length=2)]
    primary_priority: list[Text]
    sources: RawLabels

    @model_validator(mode="after")
    def _known_diseases(self) -> LabelFile:
        names = [d.name for d in self.diseases]
        if len(set(names)) != len(names):
            raise ValueError(f"diseases: a name is listed twice in {names}")
        for where, value in [("primary_priority", p) for p in self.primary_priority] + [
                (f"sources.{source}", target) for source, mapping in self.sources
                for target in mapping.values() if not target.startswith("drop:")]:
            if value not in names:
                raise ValueError(f"{where}: {value!r} is not a disease of `diseases`; allowed: "
                                 f"{', '.join(map(repr, names))} or 'drop: <reason>'")
        return self


# --- configs/questions.yaml -------------------------------------------------------------------------------

class Question(Strict):
    id: Annotated[str, Field(pattern=r"^s(dd|ll)-\d{2}$")]
    text: Text


class Questions(Strict):
    diagnosis: Annotated[list[Question], Field(min_length=1)]
    localization: Annotated[list[Question], Field(min_length=1)]

    @model_validator(mode="after")
    def _unique_ids(self) -> Questions:
        ids = [q.id for q in self.diagnosis + self.localization]
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        if repeated:
            raise ValueError(f"question ids used twice: {', '.join(repeated)}")
        return self


SCHEMAS: dict[str, type[BaseModel]] = {
    "sources": Sources,
    "profiles": Profiles,
    "labels": LabelFile,
    "questions": Questions,
}
# configs/csxa.yaml belongs to its reader, which imports this module: its model is looked up when needed
READER_SCHEMAS = {"csxa": ("build.sources.csxa", "Mapping")}


@lru_cache(maxsize=None)
def load(name: str) -> dict[str, Any]:
    """configs/<name>.yaml as a dict, checked against its schema (cached: configs do not change in a build)."""
    path = CONFIGS_DIR / f"{name}.yaml"
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
    except OSError as error:
        raise ConfigError(f"{path}: cannot be read ({error.strerror})") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({error})") from None
    check(schema(name), data, path)
    return data


def schema(name: str) -> type[BaseModel]:
    if name in READER_SCHEMAS:
        module, model = READER_SCHEMAS[name]
        return getattr(importlib.import_module(module), model)
    return SCHEMAS[name]


def load_all() -> None:
    """Check every configs/ file: a stage calls this before its first write."""
    for name in (*SCHEMAS, *READER_SCHEMAS):
        load(name)


def profile(name: str) -> dict[str, Any]:
    """The named profile of configs/profiles.yaml, with its name."""
    profiles = load("profiles")
    if name not in profiles:
        raise ConfigError(f"unknown profile {name!r}; {CONFIGS_DIR / 'profiles.yaml'} has "
                          f"{', '.join(profiles)}")
    return {"name": name, **profiles[name]}


def check_profile(profile: dict[str, Any]) -> None:
    """A profile as a stage received it (a test or `--shard-rows` may have changed it), checked again."""
    check(Profile, {key: value for key, value in profile.items() if key != "name"},
          f"profile {profile.get('name')!r} (configs/profiles.yaml, with command-line overrides)")


def check(model: type[BaseModel], data: Any, where: Path | str) -> None:
    """Validate `data` against `model`; a ConfigError lists every problem as `key.path: what is wrong`."""
    try:
        model.model_validate(data)
    except ValidationError as error:
        problems = [describe(model, problem) for problem in error.errors()]
        raise ConfigError(f"{where}: " + "; ".join(problems)) from None


def describe(model: type[BaseModel], problem: dict[str, Any]) -> str:
    """One pydantic error as `key.path: message`, with the allowed keys when a key is unknown."""
    loc = [str(part) for part in problem["loc"]]
    key = ".".join(loc) or "(the whole file)"
    if problem["type"] == "extra_forbidden":
        allowed = fields_at(model, loc[:-1])
        return f"{key}: unknown key; allowed keys: {', '.join(allowed)}"
    if problem["type"] == "missing":
        return f"{key}: missing key"
    if problem["type"] == "value_error":  # our own validators: the message says it all
        message = problem["msg"].removeprefix("Value error, ")
        return f"{key}: {message}" if loc else message
    found = repr(problem.get("input"))
    return f"{key}: {problem['msg']} (found {found if len(found) <= 80 else found[:77] + '...'})"


def fields_at(model: type[BaseModel], loc: list[str]) -> list[str]:
    """The keys the schema allows at `loc` (a path of keys and list indexes through models, lists and dicts)."""
    kind: Any = model
    for part in loc:
        kind = _inside(kind, part)
    kind = _unwrap(kind)
    return list(kind.model_fields) if _is_model(kind) and not issubclass(kind, RootModel) else []


def _inside(kind: Any, part: str) -> Any:
    """The annotation one step below `kind`: a model's field, a list's item, a dict's value."""
    kind = _unwrap(kind)
    if _is_model(kind):
        if issubclass(kind, RootModel):
            return _inside(kind.model_fields["root"].annotation, part)
        return kind.model_fields[part].annotation if part in kind.model_fields else None
    if typing.get_origin(kind) in (list, dict):
        return typing.get_args(kind)[-1]
    return None


def _unwrap(kind: Any) -> Any:
    """`Model | None` and `Annotated[X, ...]` -> the model or container inside."""
    while typing.get_origin(kind) in (Union, types.UnionType, Annotated):
        args = [arg for arg in typing.get_args(kind) if arg is not type(None)]
        kind = args[0]
    return kind


def _is_model(kind: Any) -> bool:
    return isinstance(kind, type) and issubclass(kind, BaseModel)


def positive(text: str) -> int:
    """argparse type of a count that must be at least 1 (workers, shard rows, batch size, pixels)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value

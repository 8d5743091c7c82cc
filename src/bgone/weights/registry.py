"""The registry: model names (registry names, aliases, release file stems and the configured public names
such as fal's "General Use (Light)") → :class:`~bgone.weights.variants.Variant`.

:data:`REGISTRY` holds the built-in variants and, read on first use (never at import), the custom
checkpoints of the user registry file (``bgone models add``; ``BGONE_MODELS_FILE``). Public names are
resolved through the configured model map (:func:`bgone.settings.model_names`); this room does not know
which protocol a name comes from.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from bgone import settings
from bgone.errors import SettingsError, UnknownModelError
from bgone.nn.types import PatchOrder
from bgone.weights.variants import BUILTIN_VARIANTS, Variant


def _normalise(name: str) -> str:
    return re.sub(r"[\s_\-.()]+", "", name.lower())


class Registry:
    """Variants by name. ``user_models`` (a function giving the user registry file) is read on first use."""

    def __init__(self, variants: Iterable[Variant] = (), *, user_models: Callable[[], Path] | None = None) -> None:
        self.variants: dict[str, Variant] = {}
        self._index: dict[str, str] = {}
        self._user_models = user_models
        for variant in variants:
            self._add(variant, replace=False)

    def _ready(self) -> Registry:
        if self._user_models is not None:
            path, self._user_models = self._user_models(), None
            for variant in read_user_models(path):
                self._add(variant, replace=True)
        return self

    def _add(self, variant: Variant, *, replace: bool) -> Variant:
        if variant.name in self.variants:
            if not replace:
                raise ValueError(f"a model named {variant.name!r} is already registered")
            self.remove(variant.name)
        keys = [variant.name, *variant.aliases]
        if variant.release_filename:
            keys.append(Path(variant.release_filename).stem)
        for key in keys:
            owner = self._index.get(_normalise(key))
            if owner is not None and owner != variant.name:
                raise ValueError(f"model name {key!r} of {variant.name!r} is already taken by {owner!r}")
        self.variants[variant.name] = variant
        self._index.update(dict.fromkeys((_normalise(k) for k in keys), variant.name))
        return variant

    def add(self, variant: Variant, *, replace: bool = False) -> Variant:
        return self._ready()._add(variant, replace=replace)

    def remove(self, name: str) -> None:
        """Forget the variant registered as ``name`` (in this process only)."""
        self.variants.pop(name, None)
        self._index = {k: v for k, v in self._index.items() if v != name}

    def __iter__(self) -> Iterator[Variant]:
        return iter(list(self._ready().variants.values()))

    def __contains__(self, name: str) -> bool:
        return self.find(name) is not None

    def find(self, name: str) -> Variant | None:
        """The variant with this registry name, alias or release file stem; None otherwise."""
        key = self._ready()._index.get(_normalise(name))
        return self.variants[key] if key else None

    def get(self, name: str) -> Variant:
        """:meth:`find`, then the configured public names; UnknownModelError with suggestions otherwise."""
        target = public_target(name)
        variant = self.find(name) or (self.find(target) if target else None)
        if variant is None:
            choices = sorted({*self.variants, *settings.model_names("v2")})
            close = difflib.get_close_matches(name, choices, n=3, cutoff=0.5)
            hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise UnknownModelError(
                f"unknown model {name!r}.{hint} Known models: {', '.join(sorted(self.variants))} "
                "(see `bgone models list`), a fal model name such as 'General Use (Light)', or a checkpoint path."
            )
        return variant


def public_target(name: str) -> str | None:
    """What a public model name maps to (registry name or checkpoint path): ``"v1:Portrait"``,
    ``"v2:Matting"`` or a bare v2 name such as ``"General Use (Light)"``; None for other names."""
    version, _, public = name.partition(":") if name.startswith(("v1:", "v2:")) else ("v2", "", name)
    return settings.model_names(version).get(public.strip())


def public_names(variant: Variant) -> list[str]:
    """The configured public names ("v1:…", "v2:…") that map to ``variant``."""
    return [
        f"{version}:{public}"
        for version in ("v1", "v2")
        for public, target in settings.model_names(version).items()
        if target == variant.name
    ]


def read_user_models(path: Path) -> list[Variant]:
    """The custom checkpoints recorded in a user registry file (none when it does not exist)."""
    if not path.is_file():
        return []
    try:
        entries = json.loads(path.read_text())
        return [
            Variant(
                name=entry["name"],
                title=entry.get("title", entry["name"]),
                backbone=entry.get("backbone", "auto"),
                design=entry.get("design", "v1"),
                patch_order=entry.get("patch_order", "einops"),
                resolution=tuple(entry["resolution"]) if entry.get("resolution") else None,  # type: ignore[arg-type]
                hf_repo=None,
                sha256=entry.get("sha256"),
                description=entry.get("description", "custom checkpoint"),
                path=entry["path"],
            )
            for entry in entries.get("models", [])
        ]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise SettingsError(
            f"the model registry {path} is not readable ({exc}); fix or delete it (it is written by `bgone models add`)"
        ) from None


def default_registry() -> Registry:
    """The built-in variants plus the user registry file, read now."""
    return Registry(BUILTIN_VARIANTS, user_models=settings.models_file)._ready()


REGISTRY = Registry(BUILTIN_VARIANTS, user_models=settings.models_file)


def register(
    name: str,
    path: str | os.PathLike[str],
    *,
    patch_order: PatchOrder = "einops",
    resolution: tuple[int, int] | None = (1024, 1024),
    title: str | None = None,
    persist: bool = False,
) -> Variant:
    """Register a custom checkpoint under ``name`` (for this process; ``persist`` writes the user registry)."""
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    variant = Variant(
        name=name,
        title=title or name,
        backbone="auto",
        design="v1",
        patch_order=patch_order,
        resolution=resolution,
        hf_repo=None,
        description="custom checkpoint",
        path=str(path),
    )
    REGISTRY.add(variant, replace=True)
    if persist:
        file = settings.models_file()
        data = json.loads(file.read_text()) if file.is_file() else {"models": []}
        data["models"] = [m for m in data["models"] if m["name"] != name]
        data["models"].append(
            {
                "name": name,
                "title": variant.title,
                "path": str(path),
                "patch_order": patch_order,
                "resolution": list(resolution) if resolution else None,
            }
        )
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(json.dumps(data, indent=2))
    return variant

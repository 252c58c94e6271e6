"""A registry of interchangeable parts by the name config.yaml gives them: the face detectors and
the gender/age classifiers each have one, so adding a part is its file plus one line."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Dict, Iterator

from .errors import ModelError


class Registry:
    """Config name -> module of ``package``, imported only when that part is chosen (a part's
    module imports its engine). Iterates over the names; ``in`` tests one."""

    def __init__(self, package: str, kind: str, modules: Dict[str, str]) -> None:
        self.package, self.kind, self._modules = package, kind, dict(modules)

    def __iter__(self) -> Iterator[str]:
        return iter(self._modules)

    def __contains__(self, name: object) -> bool:
        return name in self._modules

    def module(self, name: str) -> ModuleType:
        """The module of the part ``name``; ModelError naming the known ones when there is none."""
        if name not in self._modules:
            raise ModelError(f"unknown {self.kind} '{name}'; choose one of {', '.join(self._modules)}")
        return importlib.import_module(f"{self.package}.{self._modules[name]}")

"""Packaging: only `mlsup_jax` is installed, the ranges admit the pinned set, entry points exist.

`setup.py` states compatible ranges; `constraints.txt` pins the tested set that CI and README's
commands install. Every pin must satisfy its range (or the constraints could not be installed),
and every runtime requirement must be pinned (or CI would not install what was tested).
"""

from __future__ import annotations

import ast
import importlib
import pathlib
import re

import setuptools
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = pathlib.Path(__file__).resolve().parents[1]


def _setup_literal(name: str):
  tree = ast.parse((REPO / "setup.py").read_text())
  for node in tree.body:
    if isinstance(node, ast.Assign) and node.targets[0].id == name:
      return ast.literal_eval(node.value)
  raise AssertionError(f"setup.py has no {name}")


def _pins() -> dict[str, Version]:
  pins = {}
  for line in (REPO / "constraints.txt").read_text().splitlines():
    line = line.split("#")[0].strip()
    if line:
      name, version = line.split("==")
      pins[canonicalize_name(name)] = Version(version)
  return pins


def test_only_the_library_package_is_installed():
  packages = setuptools.find_packages(str(REPO), include=["mlsup_jax", "mlsup_jax.*"])
  assert "mlsup_jax" in packages
  assert all(p == "mlsup_jax" or p.startswith("mlsup_jax.") for p in packages)
  text = (REPO / "setup.py").read_text()
  assert re.search(r'find_packages\(include=\["mlsup_jax", "mlsup_jax\.\*"\]\)', text)


def test_every_requirement_is_a_range_that_admits_its_pin():
  pins = _pins()
  extras = _setup_literal("EXTRAS_REQUIRE")
  for spec in [*_setup_literal("INSTALL_REQUIRES"), *extras["test"]]:
    requirement = Requirement(spec)
    name = canonicalize_name(requirement.name)
    assert name in pins, f"{name} is required but not pinned in constraints.txt"
    assert requirement.specifier.contains(pins[name]), f"{spec} excludes the pin {pins[name]}"
  for spec in _setup_literal("INSTALL_REQUIRES"):
    assert "==" not in spec, f"{spec}: install_requires states ranges; pins go in constraints"
  for extra in ("cuda12", "tpu"):
    (spec,) = extras[extra]
    assert Requirement(spec).specifier.contains(pins["jax"]), spec


def test_console_scripts_point_at_functions():
  text = (REPO / "setup.py").read_text()
  for script, target in re.findall(r'"(mlsup-\w+)=([\w.:]+)"', text):
    module, _, function = target.partition(":")
    assert callable(getattr(importlib.import_module(module), function)), script

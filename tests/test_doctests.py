"""The runnable examples in the library's docstrings run, and give what they show.

Every module of `mlsup_jax` (and `configs`, `launch`) whose docstrings hold `>>>` examples is
collected; each module's examples run as one doctest (from the repository root, so examples may
name config files such as `configs/scunet.py`).
"""

from __future__ import annotations

import doctest
import importlib
import pathlib
import pkgutil

import pytest

import mlsup_jax

REPO = pathlib.Path(__file__).resolve().parents[1]


def _modules_with_examples() -> list[str]:
  names = [m.name for m in pkgutil.walk_packages(mlsup_jax.__path__, "mlsup_jax.")]
  names = ["mlsup_jax", *names]
  found = []
  for name in names:
    path = REPO / (name.replace(".", "/") + ".py")
    if not path.exists():
      path = REPO / name.replace(".", "/") / "__init__.py"
    if path.exists() and ">>>" in path.read_text():
      found.append(name)
  return found


def test_the_public_api_has_examples():
  modules = set(_modules_with_examples())
  for expected in (
    "mlsup_jax.losses.segmentation",
    "mlsup_jax.losses.layout",
    "mlsup_jax.metrics.segmentation",
    "mlsup_jax.metrics.ood",
    "mlsup_jax.ood.scores",
    "mlsup_jax.ot.otdd",
  ):
    assert expected in modules


@pytest.mark.parametrize("name", _modules_with_examples())
def test_docstring_examples_run(name, monkeypatch):
  monkeypatch.chdir(REPO)
  module = importlib.import_module(name)
  finder = doctest.DocTestFinder(exclude_empty=True)
  runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
  tests = [t for t in finder.find(module, name) if t.examples]
  assert tests, f"{name} has '>>>' but no example was found"
  for test in tests:
    runner.run(test)
  result = runner.summarize(verbose=False)
  assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"

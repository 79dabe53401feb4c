"""README's commands and every command in docs/ name modules, configs and flags that exist.

Each `python -m <module> …`, `mlsup-train …` / `mlsup-evaluate …` command (in code blocks and
inline code, `\\`-continued lines joined) is parsed: the module must be a file of the clone; each
`--flag` must be one that module (or the shared `mlsup_jax/cli.py`) defines; a `--config=…`
with its `--config.*` overrides is loaded and resolved exactly as the launch script would
(`mlsup_jax.cli.load_config`), so a renamed option, field or loss term fails here. Placeholders
(`DIR`, `K`, `…`) are filled with harmless values first.
"""

from __future__ import annotations

import pathlib
import re
import shlex

import pytest

from mlsup_jax.cli import load_config

REPO = pathlib.Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
# Entry points and the Python file that defines their flags.
CONSOLE = {"mlsup-train": "mlsup_jax/cli.py", "mlsup-evaluate": "mlsup_jax/cli.py"}
SHARED_FLAGS = {"workdir", "multihost", "compilation_cache", "config", "step", "output_dir"}
# Placeholders in documented commands → values that parse.
PLACEHOLDERS = {
  "=/path/to/configs/": "=configs/",
  "=DIR2": "=/tmp/mlsup_doc_dir2",
  "=DIR": "=/tmp/mlsup_doc_dir",
  "=K ": "=3 ",
  "_sS ": "_s0 ",
  "seed=S": "seed=0",
  "=N ": "=3 ",
  "'(...)'": '\'("a", "b", "c")\'',
}


def _commands(path: pathlib.Path) -> list[str]:
  text = path.read_text()
  blocks = re.findall(r"```(?:bash|sh)?\n(.*?)```", text, flags=re.S)
  inline = re.findall(r"`([^`\n]*(?:python -m |mlsup-(?:train|evaluate) )[^`\n]*)`", text)
  lines = []
  for block in blocks:
    lines += block.replace("\\\n", " ").splitlines()
  commands = []
  for line in [*lines, *inline]:
    line = line.split("#")[0] if " #" in line else line
    for part in line.split("&&"):
      part = part.strip()
      if re.search(r"(python -m \w|^mlsup-(train|evaluate)\b)", part):
        commands.append(part)
  return commands


def _all_commands():
  found = []
  for path in DOCS:
    for command in _commands(path):
      found.append(pytest.param(command, id=f"{path.name}:{command[:60]}"))
  return found


def test_the_docs_hold_commands():
  names = [p.id for p in _all_commands()]
  assert any("README.md" in n and "launch.maxquery" in n for n in names)
  assert any("README.md" in n and "pytest" in n for n in names)


def _defined_flags(path: pathlib.Path) -> set[str]:
  text = path.read_text()
  return set(re.findall(r"DEFINE_\w+\(\s*\"(\w+)\"", text))


@pytest.mark.parametrize("command", _all_commands())
def test_documented_command_names_existing_things(command):
  for placeholder, value in PLACEHOLDERS.items():
    command = command.replace(placeholder, value)
  words = shlex.split(command.replace("…", ""))
  if "-m" in words:
    module = words[words.index("-m") + 1]
    args = words[words.index("-m") + 2 :]
    if module in ("pip", "pytest", "venv"):
      return
    source = REPO / (module.replace(".", "/") + ".py")
    assert source.exists(), f"{module} is not a module of the repository"
  else:
    source = REPO / CONSOLE[words[0]]
    args = words[1:]
  defined = _defined_flags(source) | SHARED_FLAGS
  for arg in args:
    if arg.startswith("--"):
      name = arg[2:].split("=", 1)[0].removeprefix("no")
      assert name.split(".")[0] in defined, f"{source.name} defines no flag --{name}"
  config_args = [a for a in args if a.startswith("--config")]
  if config_args:
    for arg in config_args:
      if arg.startswith("--config="):
        config_file = REPO / arg.split("=", 1)[1].split(":", 1)[0]
        assert config_file.exists(), f"no config file {config_file}"
    load_config([a.replace("--config=", f"--config={REPO}/", 1) for a in config_args])

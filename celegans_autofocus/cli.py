# Copyright 2026 celegans_autofocus maintainers
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.

"""``celegans-autofocus <command>``: one sub-command per module in :mod:`celegans_autofocus.commands`.

Each command module defines ``HELP`` (one line), ``add_arguments(parser)`` and
``run(args) -> int``. Heavy imports (torch, rclpy) happen inside ``run`` only, so
``--help`` and the data commands stay fast and torch-free. Every command accepts
``--config FILE.yaml``: its keys (option names, dashes or underscores) become defaults,
and options given on the command line win. A file may name another as ``base`` (a path relative to its own
folder): the base's keys first, then the file's own (as mmcv's ``_base_``), so a recipe states only what differs.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

import yaml

COMMANDS = ["synth", "label", "crop", "train", "finetune", "evaluate", "check_real", "export", "sim", "bench",
            "bag_eval", "acquire", "bag_to_dataset"]


def read_config(path: Path, _seen: tuple[Path, ...] = ()) -> dict:
    """Return the YAML mapping of ``path`` over its ``base`` chain (a base's keys first, the file's own win).

    Raises ValueError, naming the file, for an unreadable file, a file that is not a mapping, or a cycle of bases.
    """
    path = Path(path)
    if path.resolve() in _seen:
        chain = " -> ".join(map(str, _seen + (path.resolve(),)))
        raise ValueError(f"config {path}: its base chain comes back to it ({chain})")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"cannot read config {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"config {path} must be a mapping of option: value")
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str) or not base:
        raise ValueError(f"config {path}: base must name a YAML file (relative to {path.parent}), got {base!r}")
    return {**read_config(path.parent / str(base), _seen + (path.resolve(),)), **data}


def _load_config(parser: argparse.ArgumentParser, path: Path) -> None:
    try:
        data = read_config(path)
    except ValueError as exc:
        parser.error(str(exc))
    known = {a.dest for a in parser._actions}
    defaults = {}
    for key, value in data.items():
        dest = str(key).replace("-", "_")
        if dest not in known:
            parser.error(f"config {path}: unknown option {key!r}")
        defaults[dest] = value
    parser.set_defaults(**defaults)


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    parser = argparse.ArgumentParser(
        prog="celegans-autofocus",
        description="One-shot CNN autofocus for C. elegans: data, training, simulation and evaluation tools.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    subparsers = {}
    for name in COMMANDS:
        module = importlib.import_module(f"celegans_autofocus.commands.{name}")
        cmd = name.replace("_", "-")
        p = sub.add_parser(cmd, help=module.HELP, description=module.HELP,
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        p.add_argument("--config", type=Path, help="YAML file of option: value defaults; `base: OTHER.yaml` (relative "
                       "to the file) takes another file's first")
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
        subparsers[cmd] = p
    return parser, subparsers


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser, subparsers = build_parser()
    args = parser.parse_args(argv)
    if args.config is not None:
        sp = subparsers[args.command]
        _load_config(sp, args.config)
        args = parser.parse_args(argv)
    return int(args._run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())

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
and options given on the command line win. Each value is checked as the option checks the command line's (a flag
takes true or false only); a required option the config gives is no longer required. A file may name another as
``base`` (a path relative to its own folder): the base's keys first, then the file's own (as mmcv's ``_base_``), so
a recipe states only what differs.
"""
from __future__ import annotations

import argparse
import contextlib
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
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ValueError(f"cannot read config {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"config {path} must be a mapping of option: value")
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str) or not base:
        raise ValueError(f"config {path}: base must name a YAML file (relative to {path.parent}), got {base!r}")
    return {**read_config(path.parent / str(base), _seen + (path.resolve(),)), **data}


_FLAG_ACTIONS = (argparse._StoreTrueAction, argparse._StoreFalseAction, argparse.BooleanOptionalAction)


def _config_item(action: argparse.Action, item: object) -> object:
    """Return one config value for ``action`` as its ``type`` and ``choices`` take it on the command line.

    Raises ValueError saying what is expected: a string, or a number where the option takes a number or any text,
    through ``type`` and within ``choices``.
    """
    kind = getattr(action.type, "__name__", "str")
    numbers = (int, float) if action.type in (None, int, float) else ()
    if isinstance(item, bool) or not isinstance(item, (str, *numbers)):
        raise ValueError(f"expected {kind}, got {item!r}")
    try:
        value = str(item) if action.type is None else action.type(str(item))
    except (TypeError, ValueError, argparse.ArgumentTypeError):
        raise ValueError(f"expected {kind}, got {item!r}") from None
    if action.choices is not None and value not in action.choices:
        raise ValueError(f"{item!r} is not one of {', '.join(map(str, action.choices))}")
    return value


def _config_items(action: argparse.Action, value: object, count: int | None) -> list:
    """Return ``value`` as a list of ``count`` items (any number when None; a lone scalar is one item)."""
    items = value if isinstance(value, list) else [value]
    if count is not None and len(items) != count:
        raise ValueError(f"expected a list of {count} values, got {value!r}")
    if count is None and not items and (action.nargs == "+" or action.required):
        raise ValueError("expected at least one value, got an empty list")
    return [_config_item(action, item) for item in items]


def _config_value(action: argparse.Action, value: object) -> object:
    """Return the config ``value`` of ``action`` as the command line would give it.

    Raises ValueError saying what is expected: true/false for a flag, a list for an option taking several values
    (a lone value counts as one, as one use of the option does), a value through ``type`` and ``choices`` otherwise.
    """
    if isinstance(action, _FLAG_ACTIONS):
        if not isinstance(value, bool):
            raise ValueError(f"expected true or false, got {value!r}")
        return value
    if value is None and action.default is None and not action.required:
        return None
    many = action.nargs in ("+", "*") or isinstance(action.nargs, int)
    count = action.nargs if isinstance(action.nargs, int) else None
    if isinstance(action, argparse._AppendAction):
        if value == [] and not action.required:  # no uses at all: clears what a base or parameter file set
            return []
        if not many:
            return _config_items(action, value, None)
        uses = value if isinstance(value, list) and any(isinstance(v, list) for v in value) else [value]
        return [_config_items(action, use, count) for use in uses]
    if many:
        return _config_items(action, value, count)
    if isinstance(value, list):
        raise ValueError(f"expected one value, got the list {value!r}")
    return _config_item(action, value)


def _load_config(parser: argparse.ArgumentParser, path: Path, given: argparse.Namespace | None = None) -> None:
    """Set the defaults of ``parser`` from the config file ``path``, each checked as its option checks it.

    An option the config sets is no longer required. An option that collects its uses (``action="append"``) and that
    ``given`` (the command line's parse) holds keeps the command line's uses only: the command line wins.
    Exits through ``parser.error``, naming the file and the key, for an unknown key or a value the option refuses.
    """
    try:
        data = read_config(path)
    except ValueError as exc:
        parser.error(str(exc))
    actions = {a.dest: a for a in parser._actions if a.dest not in ("help", "config")}
    defaults = {}
    for key, value in data.items():
        dest = str(key).replace("-", "_")
        if dest not in actions:
            parser.error(f"config {path}: unknown option {key!r}")
        action = actions[dest]
        try:
            value = _config_value(action, value)
        except ValueError as exc:
            parser.error(f"config {path}: {key}: {exc}")
        if not (isinstance(action, argparse._AppendAction) and getattr(given, dest, None) is not None):
            defaults[dest] = value
        action.required = action.required and not action.option_strings
    parser.set_defaults(**defaults)


def _usage_text(parser: argparse.ArgumentParser) -> str:
    """Return the usage line of ``parser`` as it reads now, ready to stand as its ``usage``."""
    formatter = parser._get_formatter()
    formatter.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups, prefix="usage: ")
    return formatter.format_help().strip()[len("usage: "):].replace("%", "%%")


@contextlib.contextmanager
def _required_options_relaxed(parsers: list[argparse.ArgumentParser]):
    """Let ``parsers`` parse without their required options (a config may give them) while the block runs.

    Their usage lines (in ``--help`` and errors) still show those options as required.
    """
    relaxed = {p: [a for a in p._actions if a.required and a.option_strings] for p in parsers}
    relaxed = {p: actions for p, actions in relaxed.items() if actions}
    usages = {p: p.usage for p in relaxed}
    for p, actions in relaxed.items():
        p.usage = _usage_text(p)
        for action in actions:
            action.required = False
    try:
        yield
    finally:
        for p, actions in relaxed.items():
            p.usage = usages[p]
            for action in actions:
                action.required = True


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
    with _required_options_relaxed(list(subparsers.values())):
        args = parser.parse_args(argv)
    if args.config is not None:
        _load_config(subparsers[args.command], args.config, args)
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except OSError as exc:  # a path the command cannot use (a file where a folder goes, no room, no permission)
        print(f"celegans-autofocus {args.command}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

"""YAML config files of the commands: ``isamap-train --config`` and ``isamap-map --config``.

One reader (:func:`read_config_file`) turns a file into a mapping of option: value, with one
clear error for a missing file, bad YAML or anything but a mapping, and one schema rule
(:func:`check_config`) checks it: a command's config schema is a mapping of option name to
type hint, every key must be one of its names (an unknown one is told with the closest name),
and every value is checked by the one type rule (:func:`typed_value`). Two commands use it:

- ``isamap-train``: the schema is its options' types (``training.config.option_types``), whose
  names are the flags' with underscores (``batch_size``, ``out_dir``, ``model_kwargs``);
- ``isamap-map`` (and any argparse command) hands the file to :func:`parse_with_config`, which
  makes its values the parser's defaults, so a flag typed on the command line still wins.
  The schema is the parser's (:func:`parser_schema`): keys are the flags' destinations
  (``region_file`` for ``--region-file``; a dash is accepted too), typed as the flag is (its
  type and choices), so a bad file fails before any work starts, naming the key. A value
  the command's own checks refuse later (an :class:`~core.errors.OptionError`, such as
  ``tile: -256``) is told naming the file's key too (:func:`config_file_errors`), unless a
  flag typed on the command line gave it.

The same fault in either command's file is told in the same words.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import math
import sys
import types
import typing
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from core.errors import ConfigError, OptionError

CONFIG_FLAG = "--config"
FROM_FILE = "config_keys"  #: the parsed namespace's names the config file gave (no flag did)


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The options a YAML config file sets (only those; absent ones keep their defaults).

    Raises:
        ConfigError: the file is missing, is not YAML, or does not hold a mapping.
    """
    try:
        values = yaml.load(Path(path).read_text(), Loader=_UniqueKeyLoader) or {}
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a folder; give a .yaml file") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {yaml_problem(exc)}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"config file {path} must hold a mapping of option: value")
    return values


class _UniqueKeyLoader(yaml.SafeLoader):  # type: ignore[misc]  # PyYAML ships no types here
    """PyYAML's safe loader, refusing a key given twice in one mapping (PyYAML keeps the last).

    ``epochs: 2`` then ``epochs: 3`` in one file is a mistake, not a choice between them.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # "<<: *base", which keys override
                continue
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, typing.Hashable) and key in first:
                raise yaml.constructor.ConstructorError(
                    None, None, f"{key!r} is given twice (first on line {first[key] + 1}): keep "
                    "one", key_node.start_mark)
            if isinstance(key, typing.Hashable):
                first[key] = key_node.start_mark.line
        return dict(super().construct_mapping(node, deep=deep))


def yaml_problem(exc: yaml.YAMLError) -> str:
    """PyYAML's several-line report as one line: where, what, and what it was reading.

    ``line 2, column 1: expected ',' or ']', but got '<stream end>' (while parsing a flow
    sequence from line 1, column 9)``; its excerpt of the file is left out.
    """
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None)
    if problem is None:
        return " ".join(str(exc).split())
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    context, since = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    while_ = (f" ({context}" + (f" from line {since.line + 1}, column {since.column + 1}"
                                if since is not None else "") + ")") if context else ""
    return f"{where}{problem}{while_}"


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    """``--config FILE``: the options of a YAML file; flags given as well override them."""
    parser.add_argument(CONFIG_FLAG, metavar="FILE", help=(
        "YAML file of options (keys are the option names with underscores, e.g. "
        "region_file: zones.geojson; configs/ has examples); flags given as well override it"))


def parse_with_config(parser: argparse.ArgumentParser,
                      argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse ``argv`` with the ``--config`` file's values as the parser's defaults.

    A bad file (unknown key, wrong type, a value outside the choices) ends the command the way
    a bad flag does: one line on stderr, exit status 2, before any work.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    path = _config_path(argv)
    given = _use_config(parser, path) if path else {}
    args = parser.parse_args(argv)
    if getattr(args, "config", None) and args.config != path:  # given in a form not scanned
        path = args.config
        given = _use_config(parser, path)
        args = parser.parse_args(argv)
    setattr(args, FROM_FILE, frozenset(given) - _typed(parser, argv, given))
    return args


def _typed(parser: argparse.ArgumentParser, argv: Sequence[str],
           dests: Mapping[str, Any]) -> set[str]:
    """Which of ``dests`` (set by the config file) ``argv`` gives as well (the flag wins).

    ``argv`` parsed again with those options' defaults suppressed: a name in the result was
    typed, however argparse allowed it to be (``--tile=256``, ``--til 256``).
    """
    actions = [a for a in parser._actions if a.dest in dests]
    saved = [(a, a.default) for a in actions]
    defaults = {d: parser._defaults.pop(d) for d in list(parser._defaults) if d in dests}
    for action in actions:
        action.default = argparse.SUPPRESS
    try:
        typed = vars(parser.parse_args(argv))
    finally:
        for action, default in saved:
            action.default = default
        parser._defaults.update(defaults)
    return {d for d in dests if d in typed}


@contextlib.contextmanager
def config_file_errors(args: argparse.Namespace) -> Iterator[None]:
    """An :class:`OptionError` of a key that ``args``' config file gave, told naming the key.

    ``isamap-map --config FILE`` with ``tile: -256``: ``FILE: tile must be at least 8 pixels,
    got -256``, not ``--tile ...`` (no such flag was typed).
    """
    try:
        yield
    except OptionError as exc:
        if exc.key not in getattr(args, FROM_FILE, ()):
            raise
        raise config_file_error(exc, args.config) from None


def config_file_error(exc: OptionError, path: str) -> ConfigError:
    """``exc``'s rule naming the config file ``path`` and its key, as the schema's rules do."""
    return ConfigError(f"{path}: {exc.key} {exc.rule}")


def _config_path(argv: Sequence[str]) -> str | None:
    """The ``--config`` value in ``argv`` (read before parsing: the file sets the defaults)."""
    args = list(argv)
    for i, arg in enumerate(args):
        if arg == "--":
            break
        if arg == CONFIG_FLAG and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(CONFIG_FLAG + "="):
            return arg.split("=", 1)[1]
    return None


def _use_config(parser: argparse.ArgumentParser, path: str) -> dict[str, Any]:
    """The config file's values made ``parser``'s defaults; returns them."""
    try:
        defaults = config_defaults(parser, read_config_file(path), path)
    except ConfigError as exc:
        parser.exit(2, f"{parser.prog}: error: {exc}\n")
    for action in parser._actions:
        if action.dest in defaults:
            action.required = False  # the file gives it
    parser.set_defaults(**defaults)
    return defaults


def config_defaults(parser: argparse.ArgumentParser, values: Mapping[str, Any],
                    source: str = "config file") -> dict[str, Any]:
    """``values`` checked against ``parser``'s schema and converted as their flags would be."""
    actions = _config_actions(parser)
    checked = check_config(values, parser_schema(parser), source)
    return {dest: _value(actions[dest], value, f"{source}: {dest}")
            for dest, value in checked.items()}


def _config_actions(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {a.dest: a for a in parser._actions
            if a.option_strings and a.dest not in ("help", "version", "config")}


def parser_schema(parser: argparse.ArgumentParser) -> dict[str, Any]:
    """An argparse command's config schema: each option's destination and its value's type.

    A count (``-v``) is a whole number, a switch true or false, a number flag its number, an
    option with choices a ``Literal`` of them, a repeated option a list; anything else (text,
    or a flag of its own converter, checked when the value is converted) is text.
    """
    return {dest: _hint(action) | None for dest, action in _config_actions(parser).items()}


def _hint(action: argparse.Action) -> Any:
    if isinstance(action, argparse._CountAction):
        return int
    if isinstance(action, argparse.BooleanOptionalAction):
        return bool
    if isinstance(action, argparse._StoreConstAction):
        return bool if isinstance(action.const, bool) else Any
    if action.choices is not None and action.type is None \
            and all(isinstance(c, str) for c in action.choices):
        one: Any = typing.Literal[tuple(action.choices)]
    else:
        one = action.type if action.type in (int, float) else Any
    if _optional_value(action):
        return one | bool
    return list[one] if isinstance(action, argparse._AppendAction) else one


def _optional_value(action: argparse.Action) -> bool:
    """A flag that may take a value (``--temporal-consistency [RULE]``): ``true`` is the flag."""
    return action.nargs == "?" and action.const is not None


def check_config(values: Mapping[str, Any], schema: Mapping[str, Any],
                 source: str) -> dict[str, Any]:
    """A config file's ``values`` checked against a command's ``schema`` (name: type hint).

    Keys are option names with underscores; a dash is read as one (``batch-size``).

    Raises:
        ConfigError: a key the schema does not name (told with the closest name, else all of
            them), or a value not of its option's type (:func:`typed_value`).
    """
    values = {str(key).replace("-", "_"): value for key, value in values.items()}
    for key in values:
        if key not in schema:
            close = difflib.get_close_matches(str(key), list(schema), n=1, cutoff=0.6)
            raise ConfigError(f"{source}: unknown option {key!r}; " + (
                f"did you mean {close[0]!r}?" if close
                else f"known: {', '.join(sorted(schema))}"))
    return typed_values(values, schema, source)


def _value(action: argparse.Action, value: Any, where: str) -> Any:
    if value is None:
        return None
    if isinstance(action, argparse._CountAction):  # -v -v: a count of at least 0
        count = typed_value(value, int, where)
        if count < 0:
            raise ConfigError(f"{where} must be a whole number >= 0, got {value!r}")
        return count
    if isinstance(action, argparse.BooleanOptionalAction):  # --x / --no-x
        return typed_value(value, bool, where)
    if isinstance(action, argparse._StoreConstAction):  # store_true/false are these too
        if not isinstance(action.const, bool):
            raise ConfigError(f"{where}: give this option as a flag on the command line")
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return action.const if value else action.default
    if isinstance(value, bool) and _optional_value(action):  # the flag alone, or not given
        return action.const if value else action.default
    if isinstance(action, argparse._AppendAction):
        items = value if isinstance(value, list) else [value]
        return [_one(action, v, where) for v in items]
    if isinstance(value, list | dict):
        raise ConfigError(f"{where} takes one value, got {value!r}")
    return _one(action, value, where)


def _one(action: argparse.Action, value: Any, where: str) -> Any:
    convert = action.type
    if convert in (int, float):
        value = convert(typed_value(value, convert, where))
    elif callable(convert):  # a registered type name (a string) is left to argparse
        try:
            value = convert(str(value))
        except (argparse.ArgumentTypeError, TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: {exc}") from None
    elif not isinstance(value, str):
        value = str(value)  # a YAML number where the flag reads text
    if action.choices is not None and value not in action.choices:
        raise ConfigError(f"{where} must be one of {', '.join(map(str, action.choices))}, "
                          f"got {value!r}")
    return value


def typed_value(value: Any, kind: Any, where: str) -> Any:
    """``value`` from a YAML file checked as ``kind`` (the one type rule of both commands).

    ``kind`` is a type hint: ``int``, ``float``, ``bool``, ``str``, a ``Literal`` of choices,
    ``tuple[str, ...]``, a mapping, or an optional one (``X | None``). A whole number is no
    boolean and no 1.5 (YAML's ``true`` is not a batch size of 1, and 1.5 epochs is no
    number of epochs); a number where text is read becomes text; a string that reads as a
    number is one where a ``float`` is wanted, because YAML 1.1 reads ``1e-3`` (no dot) as
    text. Anything else is refused naming ``where`` (the file and key).

    Raises:
        ConfigError: ``value`` is not of ``kind``.
    """
    args = typing.get_args(kind)
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return typed_value(value, inner[0], where) if len(inner) == 1 else value
    if typing.get_origin(kind) is typing.Literal:
        if isinstance(value, bool) and {"on", "off"} <= set(args):  # YAML 1.1 reads on/off
            value = "on" if value else "off"  # as booleans
        if value not in args:
            raise ConfigError(f"{where} must be one of {', '.join(map(str, args))}, "
                              f"got {value!r}")
        return value
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be a whole number, got {value!r}")
        return value
    if kind is float:
        return _float(value, where)
    if kind is str:
        if isinstance(value, list | dict | bool):
            raise ConfigError(f"{where} takes one text value, got {value!r}")
        return value if isinstance(value, str) else str(value)
    if typing.get_origin(kind) is list:  # a repeated option: one value or a list of them
        items = value if isinstance(value, list) else [value]
        return [typed_value(v, (typing.get_args(kind) or (Any,))[0], where) for v in items]
    if typing.get_origin(kind) is tuple:
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list | tuple) or not all(isinstance(v, str) for v in items):
            raise ConfigError(f"{where} must be a list of names (or one comma-separated "
                              f"text), got {value!r}")
        return tuple(v.strip() for v in items if v.strip())
    if kind in (Mapping, dict) or typing.get_origin(kind) in (Mapping, dict):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where} must be a mapping of name: value, got {value!r}")
        return dict(value)
    return value


def _float(value: Any, where: str) -> int | float:
    if isinstance(value, str):  # YAML 1.1: 1e-3 without a dot is text
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if math.isfinite(number):
            return number
    elif not isinstance(value, bool) and isinstance(value, int | float):
        return value  # a whole number stays as written (a run records it so)
    raise ConfigError(f"{where} must be a number, got {value!r}")


def typed_values(values: Mapping[str, Any], hints: Mapping[str, Any],
                 source: str) -> dict[str, Any]:
    """Every key of ``values`` that ``hints`` names, checked by :func:`typed_value`."""
    return {key: typed_value(value, hints[key], f"{source}: {key}") if key in hints else value
            for key, value in values.items()}

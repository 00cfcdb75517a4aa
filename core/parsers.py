"""How every isamap command builds its parser, so all of them read alike in ``--help``.

:func:`command_parser` (and :func:`add_subcommand` for ``isamap-assess design|score``) is the
one place that decides:

* **examples**: an ``examples:`` epilog of real command lines, each under a ``#`` comment, kept
  as written (a shell copies them line by line);
* **defaults, once**: :class:`HelpFormatter` appends ``(default: X)`` to an option's help
  unless the help already states its default in its own words (``default: the model's
  recipe``), and never for ``None``/``False`` (an option that is off or taken from elsewhere
  says so in its help);
* **exact names**: ``allow_abbrev=False``, so ``--dat`` is refused instead of being taken as
  ``--data`` (a prefix that matches today silently changes meaning when a flag is added);
* ``--version``: the package's own version (:func:`core.version.code_version`),
  computed only when asked for;
* **errors first**: a command line argparse refuses prints the error on the first line, then
  "did you mean ...?" for a misspelt option, choice or subcommand (:func:`suggestion`), then
  where the options are listed, and exits 2; never the usage block before it.

* **one type per kind of number**: :func:`seed`, :func:`count` and :func:`budget` are the
  ``type=`` of every seed, count and budget flag, so a value no command can use (a seed
  numpy refuses, ``--max-concurrent 0``, ``--max-eecu-hours 1e308``) is refused while the
  command line is parsed, in the same words everywhere; a config file's value goes through
  the same type (:mod:`core.config_file`).

The logging flags (``-v``/``-q``/``--debug``) stay in :mod:`core.commands`, which
owns what they mean.
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
import textwrap
from collections.abc import Iterator, Sequence
from typing import Any, NoReturn

from core.errors import ConfigError
from core.version import code_version

#: an example: (what it does, the command line)
Example = tuple[str, str]


class HelpFormatter(argparse.HelpFormatter):
    """Prose wrapped, examples kept line by line; each option's default shown once.

    A paragraph of the description or epilog (text between blank lines) is re-wrapped to the
    terminal unless one of its lines is indented: an indented paragraph (an example, a list)
    is kept as written. A default is appended as ``(default: X)`` when the help does not
    already mention a default and the value means something on its own (not ``None``,
    ``False``, an empty list, or a counter's 0).
    """

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        paragraphs = []
        for paragraph in text.split("\n\n"):
            lines = paragraph.splitlines()
            if any(line[:1].isspace() for line in lines):
                paragraphs.append("\n".join(indent + line for line in lines))
            else:
                paragraphs.append(textwrap.fill(" ".join(paragraph.split()), width,
                                                initial_indent=indent, subsequent_indent=indent))
        return "\n\n".join(paragraphs)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text.lower() or action.option_strings == []:
            return text
        default = action.default
        if (default is None or default is False or default is argparse.SUPPRESS
                or (isinstance(default, (list, tuple)) and not default)
                or action.nargs == 0):
            return text
        return f"{text} (default: %(default)s)" if text else "default: %(default)s"


class _Version(argparse.Action):
    """``--version``: print ``PROG VERSION`` and exit; the version is looked up only then."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS,
                 default: str = argparse.SUPPRESS, help: str | None = None) -> None:
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: str | Sequence[Any] | None, option_string: str | None = None) -> None:
        sys.stdout.write(f"{parser.prog.split()[0]} {code_version()}\n")
        parser.exit()


_CHOICE = re.compile(r"invalid choice: '([^']*)' \(choose from (.*)\)")
_NUMBER = re.compile(r"^-\d|^-\.\d")  # a negative number is a value, not an option


def _options(parser: argparse.ArgumentParser) -> Iterator[str]:
    """Every option string of ``parser`` and of its subcommands' parsers."""
    for action in parser._actions:
        yield from action.option_strings
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _options(sub)


def suggestion(parser: argparse.ArgumentParser, message: str,
               argv: Sequence[str] = ()) -> str | None:
    """"did you mean ...?" for an argparse error ``message`` about ``argv``, or None.

    An invalid choice (a value, or a subcommand's name) is matched against its choices; else
    each option in ``argv`` (or named in an "unrecognized arguments" message) that the command
    does not have is matched against every option of the command and of its subcommands, so a
    misspelt ``--modle`` is named even where argparse only says ``--model`` is missing.
    """
    match = _CHOICE.search(message)
    if match:
        choices = re.findall(r"'([^']*)'", match.group(2))
        close = difflib.get_close_matches(match.group(1), choices, n=1, cutoff=0.5)
        return f"did you mean {close[0]!r}?" if close else None
    known = sorted(set(_options(parser)))
    given = list(argv)
    if message.startswith("unrecognized arguments:"):
        given += message.split(":", 1)[1].split()
    tokens = list(dict.fromkeys(t for t in given if t.startswith("-") and t != "--"
                                and not _NUMBER.match(t) and t.split("=", 1)[0] not in known))
    found = []
    for token in tokens:
        close = difflib.get_close_matches(token.split("=", 1)[0], known, n=1, cutoff=0.6)
        if close:
            found.append((token, close[0]))
    if not found:
        return None
    if len(tokens) == 1:
        return f"did you mean {found[0][1]} (for {found[0][0]})?"
    return "did you mean " + ", ".join(f"{c} (for {t})" for t, c in found) + "?"


class CommandParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose refusal is one error line, a suggestion, and a pointer."""

    _argv: Sequence[str] = ()

    def parse_known_args(  # type: ignore[override]
            self, args: Sequence[str] | None = None, namespace: Any = None,
    ) -> tuple[Any, list[str]]:
        """As argparse's; the command line is kept for :meth:`error`'s suggestion."""
        self._argv = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> NoReturn:
        """Print ``PROG: error: MESSAGE``, "did you mean ...?" where one is close, exit 2."""
        lines = [f"{self.prog}: error: {message}"]
        hint = suggestion(self, message, self._argv)
        if hint:
            lines.append(f"  {hint}")
        lines.append(f"  ({self.prog} --help lists every option, with examples)")
        self.exit(2, "\n".join(lines) + "\n")


def given_once(values: Sequence[str] | None, flag: str, why: str) -> str | None:
    """The value of an option that may be given once (``action="append"``), else refused.

    argparse keeps the last of a repeated option silently; an option whose second value
    cannot mean anything (``--encoder``: a model fuses one encoder) says so in one line.

    Raises:
        ConfigError: ``flag`` given more than once, naming the values and ``why``.
    """
    if not values:
        return None
    if len(values) > 1:
        raise ConfigError(f"{flag} given {len(values)} times ({', '.join(values)}): {why}; "
                          "give it once")
    return values[0]


#: seeds are whole numbers below this: numpy's generators take no more than 32 bits
SEED_LIMIT = 2**32
#: what a seed must be, as a refusal says it
SEED_RULE = f"must be a whole number from 0 to {SEED_LIMIT - 1}"
#: the largest budget taken: far above any real one, and still finite in every unit a command
#: converts it to (EECU-hours to seconds to requests)
BUDGET_LIMIT = 1e12


def is_seed(value: int) -> bool:
    """Whether ``value`` is a seed every generator isamap seeds takes (``0 <= value < 2**32``)."""
    return not isinstance(value, bool) and isinstance(value, int) and 0 <= value < SEED_LIMIT


def _whole(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None


def seed(text: str) -> int:
    """``type=`` of a seed flag (``--seed``, ``--point-seed``): a whole number in [0, 2**32).

    Raises:
        argparse.ArgumentTypeError: anything else (numpy refuses a negative or larger seed).
    """
    value = _whole(text)
    if not is_seed(value):
        raise argparse.ArgumentTypeError(f"{SEED_RULE}, got {text}")
    return value


def count(text: str) -> int:
    """``type=`` of a count flag (``--max-concurrent``, ``--max-workers``): a whole number >= 1.

    Raises:
        argparse.ArgumentTypeError: zero, a negative or not a whole number.
    """
    value = _whole(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text}")
    return value


def budget_problem(value: float) -> str | None:
    """What is wrong with ``value`` as a budget (a bound on what a run spends), else None.

    A budget is a positive finite number no larger than :data:`BUDGET_LIMIT`: zero or a
    negative bounds nothing, and inf, nan or ``1e308`` bound nothing a float can count.
    """
    if isinstance(value, bool) or not (0 < value <= BUDGET_LIMIT):  # nan fails both
        return (f"must be a positive number up to {BUDGET_LIMIT:g}, got {value:g}; "
                "leave it out to set no bound")
    return None


def budget(text: str) -> float:
    """``type=`` of a budget flag (``--max-eecu-hours``): see :func:`budget_problem`.

    Raises:
        argparse.ArgumentTypeError: not a number, or no budget.
    """
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    problem = budget_problem(value)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return value


def format_examples(examples: Sequence[Example]) -> str:
    """The ``examples:`` epilog: each command line under a ``#`` line saying what it does."""
    lines = ["examples:"]
    for what, command in examples:
        lines += [f"  # {what}", f"  {command}", ""]
    return "\n".join(lines).rstrip()


def command_parser(prog: str, description: str, examples: Sequence[Example],
                   **kwargs: Any) -> argparse.ArgumentParser:
    """A command's parser with its examples, defaults shown once, exact names and --version.

    Args:
        prog: the command as users type it (``isamap-predict``).
        description: what the command does; paragraphs separated by a blank line.
        examples: two or three real invocations, as (what it does, command line).
        **kwargs: passed to ``argparse.ArgumentParser``.
    """
    parser = CommandParser(prog=prog, description=description,
                           epilog=format_examples(examples), formatter_class=HelpFormatter,
                           allow_abbrev=False, **kwargs)
    parser.add_argument("--version", action=_Version, help="print isamap's version and exit")
    return parser


def add_subcommand(subparsers: argparse._SubParsersAction[argparse.ArgumentParser], name: str,
                   summary: str, description: str,
                   examples: Sequence[Example]) -> argparse.ArgumentParser:
    """A subcommand (``isamap-assess score``) built like :func:`command_parser`.

    Args:
        subparsers: what ``parser.add_subparsers()`` returned.
        name: the subcommand's name.
        summary: one line for the parent's list of subcommands.
        description: what it does, at the top of its own ``--help``.
        examples: as for :func:`command_parser`.
    """
    return subparsers.add_parser(name, help=summary, description=description,
                                 epilog=format_examples(examples),
                                 formatter_class=HelpFormatter, allow_abbrev=False)

"""What fire would not understand on a command line, said in one line before fire runs.

Fire answers an unknown command, a misspelt flag or a missing argument with its usage screen (and a misspelt flag
of ``evaluate`` only as "no value for the required argument"); :func:`command_line_error` names the word instead,
with the closest valid one. ``train`` takes every setting as a flag and checks them itself (``resolve_config``).
"""
from __future__ import annotations

import inspect
from typing import Callable, List, Optional, Sequence, Tuple

from .errors import did_you_mean


def commands_of(cli: type) -> List[str]:
    """The commands of the fire component ``cli``: its public attributes, sorted."""
    return sorted(n for n in dir(cli) if not n.startswith("_"))


def _resolve(cli: type, groups: dict, argv: List[str], prog: str) -> Tuple[Optional[Callable], str, List[str], Optional[str]]:
    """``(function, its program name, the words after it, error)`` of the command ``argv`` names (function None when
    fire should answer itself: no command word, or a group without its sub-command)."""
    if not argv or argv[0].startswith("-"):
        return None, prog, argv, None
    word, commands = argv[0], commands_of(cli)
    if word not in commands:
        return None, prog, argv, (f"unknown command '{word}' of `{prog}`{did_you_mean(word, commands, '{}')} "
                                  f"(`{prog} --help` lists them)")
    if word in groups:
        return _resolve(groups[word](), {}, argv[1:], f"{prog} {word}")
    return getattr(cli, word), f"{prog} {word}", argv[1:], None


def command_line_error(cli: type, argv: Sequence[str], groups: Optional[dict] = None, prog: str = "semiseg") -> Optional[str]:
    """The one-line error of ``argv`` for the fire component ``cli``, or None when fire may run it.

    ``groups`` maps a command that is a group of sub-commands to a function returning the group's class. Checked:
    the command (and sub-command) names, every ``--flag`` (``--name``, ``--name=value``, ``--noname`` for a boolean,
    dashes or underscores), words given to a command without parameters, and required parameters given neither by
    position nor by flag. A command with ``**kwargs`` (``train``) is left to check its own flags."""
    fn, prog, rest, error = _resolve(cli, dict(groups or {}), list(argv), prog)
    if error or fn is None:
        return error
    params = [p for p in inspect.signature(fn).parameters.values() if p.name != "self"]
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    names = [p.name for p in params]
    given, positional, takes_value = set(), 0, False
    for word in rest:
        if word == "--":
            break
        if word.startswith("--"):
            name, equals, _ = word[2:].partition("=")
            name = name.replace("-", "_")
            if name not in names and not (name.startswith("no") and name[2:] in names):
                return (f"unknown flag --{name} of `{prog}`{did_you_mean(name, names, '--{}')} "
                        f"(`{prog} --help` lists its flags)")
            given.add(name if name in names else name[2:])
            takes_value = not equals
        elif takes_value:
            takes_value = False
        else:
            positional += 1
    if positional and not names:
        return f"`{prog}` takes no argument; got {' '.join(rest)!r}"
    required = [p.name for p in params if p.default is inspect.Parameter.empty]
    missing = [n for n in required if n not in given][positional:]  # fire fills the rest in order
    if missing:
        return (f"`{prog}` needs {missing[0].upper()} (the next argument, or --{missing[0]} VALUE); "
                f"`{prog} --help` shows its usage")
    return None

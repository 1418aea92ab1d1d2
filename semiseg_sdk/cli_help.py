"""The command line's help, written to stdout: the command list, each command's flags with their defaults, and the
training flags generated from :class:`~semiseg_sdk.config.TrainConfig` (each field's comment is its help: one source).

Imports nothing heavy: help works on an install without the training extras.
"""
from __future__ import annotations

import dataclasses
import inspect
import json
import re
import textwrap
from typing import Any, Dict, List, Tuple

_SECTION = re.compile(r"^    # (\w[\w ,]*)$")
_CONFIG_FIELD = re.compile(r"^\s+(\w+): [^=]+?= .+?(?:\s+# (.*))?$")  # a dataclass field and its trailing comment
_COMMENT = re.compile(r"^\s+# (.*)$")


def train_fields() -> List[Tuple[str, str, Any, str]]:
    """``(section, flag, default, help)`` of every TrainConfig field, in source order, from its trailing comment."""
    from .config import TrainConfig

    sections: Dict[str, str] = {}
    section = "general"
    for line in inspect.getsource(TrainConfig).splitlines():
        m = _SECTION.match(line)
        if m:
            section = m.group(1)
            continue
        m = _CONFIG_FIELD.match(line)
        if m:
            sections[m.group(1)] = section
    return [(sections.get(name, "general"), name, default, text) for name, default, text in config_fields(TrainConfig)]


def _shown(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    if isinstance(value, dict):
        return "{}" if not value else str(value)
    return str(value)


def train_help() -> str:
    """``semiseg train --help``: every flag with its default and meaning, grouped as in the config."""
    lines = ["usage: semiseg train [--config FILE] [--recipe NAME] [--FLAG VALUE ...]", "",
             "Train a model. Values come from the defaults, then --recipe, then --config (JSON or TOML), then the flags.",
             "Dict flags take JSON: --method_args '{\"conf_thresh\": 0.9}'. Pairs take H,W: --crop_size 321,321.", ""]
    section = None
    for sec, name, default, text in train_fields():
        if sec != section:
            lines += ["", f"{sec}:"] if section is not None else [f"{sec}:"]
            section = sec
        head = f"  --{name} {_shown(default)}"
        wrapped = textwrap.wrap(text, 78) or [""]
        lines.append(f"{head:<40}{wrapped[0]}" if len(head) < 40 else f"{head}\n{'':<40}{wrapped[0]}")
        lines += [f"{'':<40}{w}" for w in wrapped[1:]]
    return "\n".join(lines) + "\n"


def config_fields(config: type) -> List[Tuple[str, Any, str]]:
    """``(name, default, comment)`` of every field of the dataclass ``config``, in field order. A field's comment is
    the one on its line or the comment lines just above it, in the class that declares it or the nearest base."""
    docs: Dict[str, str] = {}
    for cls in reversed(config.__mro__):  # bases first: a subclass's comment on a redeclared field wins
        try:
            source = inspect.getsource(cls) if dataclasses.is_dataclass(cls) else ""
        except (OSError, TypeError):  # a config class made at run time has no source of its own
            continue
        above: List[str] = []
        for line in source.splitlines():
            comment, field_ = _COMMENT.match(line), _CONFIG_FIELD.match(line)
            if comment:
                above.append(comment.group(1).strip())
            elif field_:
                text = field_.group(2) or " ".join(above)
                if text:
                    docs[field_.group(1)] = text.strip()
                above = []
            else:
                above = []
    out = []
    for f in dataclasses.fields(config):
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default  # type: ignore[misc]
        out.append((f.name, default, docs.get(f.name, "")))
    return out


def method_help(name: str) -> str:
    """``semiseg methods NAME``: the method's family, what it does, and every option of ``--method_args`` with its
    default and where that default comes from; the method's own options first, the shared class levers after."""
    from .methods import get_method
    from .methods.class_levers import ClassLeverConfig

    cls = get_method(name)
    levers = {f.name for f in dataclasses.fields(ClassLeverConfig)}
    lines = [f"{name}: {cls.family}", "", *textwrap.wrap(_first_paragraph(cls.__doc__ or ""), 118), "",
             f"options: --method {name} --method_args '{{\"OPTION\": VALUE, ...}}' (defaults shown in JSON)"]
    for field_name, default, text in sorted(config_fields(cls.Config), key=lambda f: f[0] in levers):  # stable
        head = f"  {field_name} {json.dumps(default, separators=(',', ':'), default=str)}"  # as --method_args takes it
        wrapped = textwrap.wrap(text, 80) or [""]
        lines.append(f"{head:<38}{wrapped[0]}" if len(head) < 38 else f"{head}\n{'':<38}{wrapped[0]}")
        lines += [f"{'':<38}{w}" for w in wrapped[1:]]
    return "\n".join(lines) + "\n"


def _first_paragraph(doc: str) -> str:
    return inspect.cleandoc(doc or "").split("\n\n")[0].replace("\n", " ")


def command_list(cli: type, prog: str) -> str:
    """The commands of ``cli`` (a fire command class), one line each."""
    lines = []
    for name, member in inspect.getmembers(cli):
        if name.startswith("_"):
            continue
        doc = member.fget.__doc__ if isinstance(member, property) else getattr(member, "__doc__", "")
        lines.append(f"  {name:<12}{textwrap.shorten(_first_paragraph(doc or ''), 104, placeholder=' ...')}")
    intro = inspect.cleandoc(cli.__doc__ or "")
    return f"usage: {prog} COMMAND [--FLAG VALUE ...]   ({prog} COMMAND --help for its flags)\n\n{intro}\n\ncommands:\n" + \
        "\n".join(lines) + "\n"


def command_help(cli: type, name: str, prog: str) -> str:
    """One command's usage, description and flags with their defaults."""
    member = inspect.getattr_static(cli, name)
    if isinstance(member, property):
        return command_list(type(member.fget(cli())), f"{prog} {name}")
    fn = getattr(cli, name)
    params = [p for p in inspect.signature(fn).parameters.values() if p.name != "self" and p.kind != p.VAR_KEYWORD]
    positional = [p.name.upper() for p in params if p.default is inspect.Parameter.empty]
    flags = [f"  --{p.name} {_shown(p.default)}" for p in params if p.default is not inspect.Parameter.empty]
    usage = " ".join([f"usage: {prog} {name}", *positional, "[--FLAG VALUE ...]" if flags else ""]).rstrip()
    return f"{usage}\n\n{inspect.cleandoc(fn.__doc__ or '')}\n" + ("\nflags (defaults shown):\n" + "\n".join(flags) + "\n"
                                                                  if flags else "")

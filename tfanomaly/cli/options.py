"""Click options made from the stage configs, so that each option is written once: beside its
dataclass field, whose ``metadata`` holds the option's help and, where needed:

- ``flag``: its declarations (``"--nan"``, ``("-n", "--n-objects")``, ``"--planes/--no-planes"``,
  or ``"--no-check"`` for a field that defaults to True and that the flag turns off); default
  ``--field-name``;
- ``choices`` (a click.Choice of them), ``type`` (for a field whose default is None), ``is_flag``;
- ``cli_default`` and ``parse``: the default as the command line spells it, and the function
  that turns the text given into the field's value (``parse_augment``, ``parse_shard``, ...).

Fields without a help are no options; a field whose default is a config (``ScoreConfig.catalog``)
gives the options of that config. The option's parameter is always the field's name.
"""

from __future__ import annotations

import dataclasses

import click


def _nested(field: dataclasses.Field):
    """The config class of a field that holds one (its default factory), else None."""
    factory = field.default_factory
    return factory if dataclasses.is_dataclass(factory) else None


def _option(field: dataclasses.Field):
    meta = field.metadata
    flags = meta.get("flag", "--" + field.name.replace("_", "-"))
    flags = (flags,) if isinstance(flags, str) else tuple(flags)
    kwargs = {"help": meta["help"]}
    if field.default is True and flags[0].startswith("--no-"):  # a switch that turns it off
        kwargs.update(flag_value=False, default=True)
    elif meta.get("is_flag"):
        kwargs.update(is_flag=True)
    else:
        kwargs.update(default=meta.get("cli_default", field.default), show_default=True)
    if "choices" in meta:
        kwargs["type"] = click.Choice(meta["choices"])
    elif "type" in meta:
        kwargs["type"] = meta["type"]
    return click.option(*flags, field.name, **kwargs)


def option_fields(config, exclude=()) -> list[dataclasses.Field]:
    """The fields of ``config`` (nested configs included) that are options, in field order."""
    fields = []
    for field in dataclasses.fields(config):
        if field.name in exclude:
            continue
        if nested := _nested(field):
            fields += option_fields(nested, exclude)
        elif "help" in field.metadata:
            fields.append(field)
    return fields


def config_options(config, exclude=()):
    """Decorator: one click option per field of ``config`` with a help text (see the module),
    leaving out the fields (or nested configs) named in ``exclude``."""
    options = [_option(field) for field in option_fields(config, exclude)]

    def decorate(command):
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


def build_config(config, options: dict, **values):
    """``config`` from the parsed ``options`` (each field's option through its ``parse``), nested
    configs alike; ``values`` give fields directly. The options used are taken out of
    ``options``, which keeps the command's own."""
    for field in dataclasses.fields(config):
        if field.name in values:
            continue
        if nested := _nested(field):
            values[field.name] = build_config(nested, options)
        elif "help" in field.metadata and field.name in options:
            value = options.pop(field.name)
            values[field.name] = field.metadata.get("parse", lambda v: v)(value)
    return config(**values)


def quiet_option(help: str = "No progress bar."):
    return click.option("--quiet", is_flag=True, help=help)


def out_option(name: str, help: str, *, required: bool = True, dir_okay: bool = True):
    """``--out`` into the parameter ``name``: a folder (or, with ``dir_okay=False``, a file)."""
    kind = click.Path(dir_okay=False) if not dir_okay else click.Path(file_okay=False)
    default = {} if required else {"default": None}
    return click.option("--out", name, required=required, type=kind, help=help, **default)


def data_option(help: str):
    """``--data``: an ingested data set other than the one a run or catalog names."""
    return click.option("--data", type=click.Path(file_okay=False), default=None, help=help)

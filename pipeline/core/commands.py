"""Pieces shared by every ``mixseg`` command (``pipeline/cli.py``, ``train/cli.py``).

Bad input -- an :class:`InputError`, or a bad value of ``params.yaml`` -- prints one
line ``mixseg <command>: error: <file>: <reason>`` on stderr and exits with status 2.
"""

from __future__ import annotations

import functools
import json
import sys

import click

from pipeline.core.config import Config, load_config
from pipeline.core.errors import InputError

PARAMS_OPTION = click.option("--params", "params_path", default="params.yaml", show_default=True,
                             type=click.Path(dir_okay=False), help="Parameters file (every knob of every stage).")
PROGRESS_OPTION = click.option("--progress/--no-progress", default=True, show_default=True,
                               help="Show a progress bar on stderr.")


def reports_errors(fn):
    """Turn InputError into one line on stderr and exit status 2."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except InputError as e:
            name = click.get_current_context().info_name
            click.echo(f"mixseg {name}: error: {e}", err=True)
            sys.exit(2)
    return wrapper


def config(params_path) -> Config:
    """``params.yaml`` read and checked (an InputError naming the key if it is bad)."""
    return load_config(params_path)


def echo_json(obj) -> None:
    click.echo(json.dumps(obj, indent=1))

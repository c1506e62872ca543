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
from pipeline.core.fileio import sweep_stale_temps

PARAMS_OPTION = click.option("--params", "params_path", default="params.yaml", show_default=True,
                             type=click.Path(dir_okay=False), help="Parameters file (every knob of every stage).")
PROGRESS_OPTION = click.option("--progress/--no-progress", default=True, show_default=True,
                               help="Show a progress bar on stderr.")


#: The folders whose killed writers' temporaries every command sweeps before it starts.
OUTPUT_ROOTS = ("data", "metrics", "models", "report")


def reports_errors(fn):
    """Turn InputError into one line on stderr and exit status 2 (Ctrl-C: one line, 130);
    first sweep the temporaries that killed writers left in the project's outputs."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        name = click.get_current_context().info_name
        try:
            sweep_stale_temps(*OUTPUT_ROOTS)
            return fn(*args, **kwargs)
        except InputError as e:
            click.echo(f"mixseg {name}: error: {e}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo(f"mixseg {name}: interrupted; the previous output is kept", err=True)
            sys.exit(130)
    return wrapper


def config(params_path) -> Config:
    """``params.yaml`` read and checked (an InputError naming the key if it is bad)."""
    return load_config(params_path)


def echo_json(obj) -> None:
    click.echo(json.dumps(obj, indent=1))

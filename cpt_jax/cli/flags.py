"""gin at the edges: command-line flags -> bindings -> the run's config objects.

The modules below never import gin. Here their config dataclasses are registered as gin
configurables, and the CLIs call `parse_flags` then build a `TrainConfig` (or another root)
from the bindings. Flags follow T5X:
  --gin_file=PATH            (repeatable; later files override earlier ones)
  --gin.NAME=VALUE           one binding, e.g. --gin.TrainConfig.num_steps=200
  --gin_param="NAME = VALUE" gin's own form (repeatable)
A --gin.NAME value that is not a Python literal or a gin reference (@x, %X) is taken as a
string, so --gin.TrainConfig.output_dir=/tmp/run needs no extra quotes.

Each --gin.NAME=VALUE and --gin_param must be exactly one binding on one line: a line break, a
second statement, an include or an import is refused (gin joins the bindings with newlines, so
one flag could otherwise bind, include or import anything). A gin file that includes itself,
directly or through others, is refused with the include chain before gin recurses.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import os
import re
from collections.abc import Sequence

import gin
from gin import config_parser

from cpt_jax.data.config import DataConfig
from cpt_jax.data.sources import (
    CodeFilesSource,
    PairedJsonlSource,
    PreparedPairsSource,
    TextFilesSource,
    TfdsTextSource,
)
from cpt_jax.loss import LossConfig
from cpt_jax.model import LoraConfig, ModelConfig
from cpt_jax.parallel.mesh import MeshConfig
from cpt_jax.train.config import TrainConfig
from cpt_jax.train.evaluation import EvalConfig
from cpt_jax.train.optimizer import OptimizerConfig
from cpt_jax.train.state import TemperatureConfig

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CONFIGURABLES = {
    cls.__name__: gin.external_configurable(cls, cls.__name__)
    for cls in (
        ModelConfig,
        DataConfig,
        MeshConfig,
        OptimizerConfig,
        TemperatureConfig,
        LossConfig,
        EvalConfig,
        LoraConfig,
        TrainConfig,
        TextFilesSource,
        CodeFilesSource,
        TfdsTextSource,
        PairedJsonlSource,
        PreparedPairsSource,
    )
}


def binding_value(raw: str) -> str:
    """The gin text of a --gin.NAME=VALUE value: a Python literal or a gin reference (@x, %X) as
    given, anything else quoted as a string (so paths need no extra quotes)."""
    raw = raw.strip()
    if raw.startswith(("@", "%")):
        return raw
    try:
        ast.literal_eval(raw)
        return raw
    except (ValueError, SyntaxError):
        pass
    # A container holding references, e.g. (@code/PreparedPairsSource(), @text/PairedJsonlSource()),
    # is gin text too; only what gin cannot read as a value is a bare string.
    if any(c in raw for c in "@%") and raw[:1] in "([{":
        try:
            if len(_statements(f"_ = {raw}")) == 1:
                return raw
        except Exception:  # gin's SyntaxError, tokenize's TokenError
            pass
    return repr(raw)


# str.splitlines() breaks lines at each of these; none belongs in a one-line binding.
_LINE_BREAKS = "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"


class _Placeholders(config_parser.ParserDelegate):
    """Parses gin text without resolving references or macros (for checking its shape)."""

    def configurable_reference(self, scoped_configurable_name, evaluate):
        return None

    def macro(self, macro_name):
        return None


def _statements(text: str) -> list:
    return list(config_parser.ConfigParser(text, _Placeholders()))


def check_binding(binding: str, flag: str) -> str:
    """The binding, or SystemExit unless it is exactly one gin binding on one line (flag: how it
    was given, for the message)."""
    if any(c in binding for c in _LINE_BREAKS):
        raise SystemExit(
            f"{flag} {binding!r} contains a line break; give one binding per flag "
            "(gin would read each line as a statement of its own)."
        )
    try:
        statements = _statements(binding)
    except Exception as e:  # gin's SyntaxError, tokenize's TokenError
        raise SystemExit(f"{flag} {binding!r} is not a gin binding NAME = VALUE: {e}") from None
    if len(statements) != 1 or not isinstance(statements[0], config_parser.BindingStatement):
        kinds = ", ".join(type(s).__name__ for s in statements) or "nothing"
        raise SystemExit(
            f"{flag} {binding!r} parses as {kinds}; it must be exactly one binding NAME = VALUE "
            "(put includes and imports in a --gin_file)."
        )
    return binding


def split_flags(argv: Sequence[str]) -> tuple[list[str], list[str], list[str]]:
    """(gin files, bindings, other args) from argv (without the program name); SystemExit for a
    binding that is not exactly one gin binding on one line."""
    files, bindings, rest = [], [], []
    it = iter(argv)
    for arg in it:
        name, eq, value = arg.partition("=")
        if name in ("--gin_file", "--gin_param") and not eq:
            value = next(it, None)
            if value is None:
                raise SystemExit(f"{name} needs a value, e.g. {name}=...")
        if name == "--gin_file":
            files.append(value)
        elif name == "--gin_param":
            bindings.append(check_binding(value, "--gin_param"))
        elif name.startswith("--gin."):
            if not eq:
                raise SystemExit(f"{arg!r} has no value; write --gin.NAME=VALUE.")
            if any(c in arg for c in _LINE_BREAKS):
                raise SystemExit(
                    f"{arg!r} contains a line break; give one binding per --gin.NAME=VALUE flag "
                    "(gin would read each line as a statement of its own)."
                )
            bindings.append(check_binding(f"{name[len('--gin.'):]} = {binding_value(value)}", name))
        else:
            rest.append(arg)
    return files, bindings, rest


def parse_flags(argv: Sequence[str]) -> list[str]:
    """Parses gin flags into gin's global config; returns the remaining arguments.

    Gin files are looked up as given, then relative to the repository root, so
    `--gin_file=configs/experiments/tiny_code.gin` works from any directory.
    """
    files, bindings, rest = split_flags(argv)
    gin.add_config_file_search_path(REPO_ROOT)
    resolved = []
    for f in files:
        if not os.path.exists(f) and not os.path.exists(os.path.join(REPO_ROOT, f)):
            raise SystemExit(f"gin file {f!r} not found (looked in the working directory and {REPO_ROOT}).")
        resolved.append(f if os.path.exists(f) else os.path.join(REPO_ROOT, f))
    for f in resolved:
        check_include_cycles(f)
    try:
        gin.parse_config_files_and_bindings(resolved, bindings, finalize_config=True)
    except ValueError as e:
        raise ValueError(f"{e}{_suggestion(str(e))}") from None
    except RecursionError:  # includes nested deeper than Python's stack, without a cycle
        raise ValueError(
            f"gin files {resolved} nest their includes deeper than Python's recursion limit; "
            "flatten the includes."
        ) from None
    return rest


def _resolve_include(name: str) -> str | None:
    """The file gin opens for `include name`: as given if absolute, else the first of the working
    directory and the search paths (gin's _LOCATION_PREFIXES) where it exists; None if none."""
    prefixes = [""] if os.path.isabs(name) else list(getattr(gin.config, "_LOCATION_PREFIXES", ["", REPO_ROOT]))
    for prefix in prefixes:
        path = os.path.join(prefix, name)
        if os.path.isfile(path):
            return path
    return None


def _includes(path: str) -> list[str]:
    """The files named by the include statements of the gin file at path (those before a syntax
    error, which gin reports itself)."""
    found = []
    try:
        with open(path) as f:
            for statement in config_parser.ConfigParser(f, _Placeholders()):
                if isinstance(statement, config_parser.IncludeStatement):
                    found.append(statement.filename)
    except Exception:  # unreadable or malformed: gin's own parse names the problem
        pass
    return found


def check_include_cycles(path: str, chain: tuple[str, ...] = ()) -> None:
    """ValueError naming the include chain if the gin file at path includes itself, directly or
    through other files (gin itself would recurse until Python's stack overflows)."""
    chain = (*chain, path)
    real = [os.path.realpath(p) for p in chain]
    if real[-1] in real[:-1]:
        loop = " -> ".join(chain[real.index(real[-1]):])
        raise ValueError(
            f"gin file {chain[real.index(real[-1])]} includes itself: {loop}; remove the include that "
            "closes the loop."
        )
    for name in _includes(path):
        included = _resolve_include(name)
        if included is not None:  # a missing file is gin's "Unable to open file" error
            check_include_cycles(included, chain)


def _suggestion(message: str) -> str:
    """' Did you mean ...?' for gin's unknown-configurable and unknown-parameter errors."""
    unknown_param = re.search(r"Configurable '(\w+)' doesn't have a parameter named '(\w+)'", message)
    if unknown_param and unknown_param.group(1) in CONFIGURABLES:
        cls, name = unknown_param.groups()
        fields = [f.name for f in dataclasses.fields(CONFIGURABLES[cls])]
        close = difflib.get_close_matches(name, fields, n=1)
        return f"\nDid you mean {cls}.{close[0]}?" if close else f"\n{cls} has: {', '.join(fields)}."
    unknown_cls = re.search(r"No configurable matching '([\w.]+)'", message)
    if unknown_cls:
        close = difflib.get_close_matches(unknown_cls.group(1), list(CONFIGURABLES), n=1)
        return f"\nDid you mean {close[0]}?" if close else f"\nConfigurables: {', '.join(CONFIGURABLES)}."
    return ""


def build(name: str):
    """An instance of a registered config class (e.g. "TrainConfig") from the parsed bindings.
    Each config dataclass checks its field types and values itself (cpt_jax/typecheck.py)."""
    return _with_bound_defaults(CONFIGURABLES[name]())


def _is_bound(parameter: str) -> bool:
    try:
        gin.query_parameter(parameter)
        return True
    except ValueError:
        return False


def _with_bound_defaults(config):
    """`config` with each nested config it left at its default (e.g. TrainConfig.loss) built from
    that class's own bindings when there are any: gin applies `LossConfig.mask_duplicates = True`
    only where `@LossConfig()` is called, so without `TrainConfig.loss = @LossConfig()` the
    binding would silently do nothing."""
    cls, updates = type(config).__name__, {}
    for field in dataclasses.fields(config):
        nested = type(field.default).__name__
        if nested not in CONFIGURABLES or _is_bound(f"{cls}.{field.name}"):
            continue
        if any(_is_bound(f"{nested}.{f.name}") for f in dataclasses.fields(field.default)):
            updates[field.name] = CONFIGURABLES[nested]()
    return dataclasses.replace(config, **updates) if updates else config


def operative_config() -> str:
    return gin.operative_config_str()

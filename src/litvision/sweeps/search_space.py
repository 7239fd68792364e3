"""Search spaces written in Hydra's sweep syntax, turned into Optuna distributions.

    model.optimizer.lr: tag(log, interval(1e-4, 1e-2))      -> FloatDistribution(log=True)
    model.net.convs_per_stage: range(1, 3)                   -> IntDistribution(1, 2)
    model.dropout: tag(int, interval(0, 4))                  -> IntDistribution(0, 4)
    data.batch_size: choice(64, 128, 256)                    -> CategoricalDistribution
    model.net.widths: choice([16,32],[32,64,128])            -> categorical over the override strings
    model: glob(small_*)                                     -> categorical over config group options
    trainer.max_epochs: 4                                     -> fixed, passed to every trial

The same syntax works in ``hydra.sweeper.params`` and on the command line (``'model.optimizer.lr=
interval(1e-4,1e-2)'``); the command line wins. A trial's overrides are built back from the override
strings, so every value reaches the job exactly as Hydra would parse it from a command line.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, Glob, IntervalSweep, Override, RangeSweep
from hydra.errors import CompactHydraException

SYNTAX = "interval(a,b), tag(log, interval(a,b)), tag(int, interval(a,b)), range(a,b[,step]), choice(...), glob(...)"


class SearchSpaceError(CompactHydraException):
    """A search-space entry Optuna cannot use: printed as one line, no traceback."""


@dataclass
class Parameter:
    """One searched override: its Optuna distribution and, for categoricals, each choice's override string."""

    distribution: Any
    strings: dict[Any, str] = field(default_factory=dict)

    def override(self, name: str, value: Any) -> str:
        if self.strings:
            return f"{name}={self.strings[value]}"
        return f"{name}={Override._get_value_element_as_str(value)}"


@dataclass
class SearchSpace:
    parameters: dict[str, Parameter]
    fixed: list[str]  # overrides every trial gets as they are

    def distributions(self) -> dict[str, Any]:
        return {name: parameter.distribution for name, parameter in self.parameters.items()}

    def example(self) -> dict[str, Any]:
        """A value of every parameter (the first choice, the low end): enough to check the keys compose."""
        return {
            name: p.distribution.choices[0] if hasattr(p.distribution, "choices") else p.distribution.low
            for name, p in self.parameters.items()
        }

    def overrides(self, params: Mapping[str, Any]) -> list[str]:
        """The command-line overrides of one trial, from its sampled ``params``."""
        searched = [
            self.parameters[name].override(name, value) for name, value in params.items() if name in self.parameters
        ]
        return [*self.fixed, *searched]


def value_string(value: Any) -> str:
    """A Python value as a Hydra override value (lists, dicts and strings quoted/escaped as needed)."""
    return Override._get_value_element_as_str(value)


def parse_search_space(params: Mapping[str, Any] | None, arguments: Sequence[str], config_loader=None) -> SearchSpace:
    """Config ``params`` (name -> sweep string or value) merged with the command-line ``arguments``."""
    parser = OverridesParser.create(config_loader=config_loader)
    lines = {
        key: f"{key}={value if isinstance(value, str) else value_string(value)}"
        for key, value in (params or {}).items()
    }
    for argument in arguments:  # the command line replaces a config entry of the same key
        lines[argument.split("=", 1)[0]] = argument
    parameters: dict[str, Parameter] = {}
    fixed: list[str] = []
    for line in lines.values():
        try:
            override = parser.parse_overrides([line])[0]
        except CompactHydraException as err:
            detail = [text for text in str(err).splitlines() if not text.startswith(("See ", "Error parsing"))]
            raise SearchSpaceError(
                f"search space entry '{line}' does not parse: {' '.join(detail)} (sweeps: {SYNTAX})"
            ) from None
        if not override.is_sweep_override():
            fixed.append(line)
            continue
        parameters[override.get_key_element()] = _parameter(override, line)
    return SearchSpace(parameters, fixed)


def _parameter(override: Override, line: str) -> Parameter:
    import optuna.distributions as dist

    sweep, tags = override.value(), set(getattr(override.value(), "tags", ()) or ())
    unknown = tags - {"log", "int"}
    if unknown:
        raise SearchSpaceError(f"'{line}': unknown tag {sorted(unknown)}; the sweeper knows 'log' and 'int'")
    try:
        if isinstance(sweep, IntervalSweep):
            if "int" in tags:
                return Parameter(dist.IntDistribution(int(sweep.start), int(sweep.end), log="log" in tags))
            return Parameter(dist.FloatDistribution(float(sweep.start), float(sweep.end), log="log" in tags))
        if isinstance(sweep, RangeSweep) and all(isinstance(x, int) for x in (sweep.start, sweep.stop, sweep.step)):
            values = list(range(sweep.start, sweep.stop, sweep.step))
            if not values:
                raise ValueError("the range is empty")
            return Parameter(dist.IntDistribution(values[0], values[-1], step=abs(sweep.step), log="log" in tags))
        if isinstance(sweep, (ChoiceSweep, RangeSweep, Glob)):
            return _categorical(override, line)
    except ValueError as err:  # Optuna's own checks: low > high, log of a non-positive bound, ...
        raise SearchSpaceError(f"'{line}': {err}") from None
    raise SearchSpaceError(f"'{line}': unsupported sweep; use {SYNTAX}")


def _categorical(override: Override, line: str) -> Parameter:
    import optuna.distributions as dist

    values, strings = list(override.sweep_iterator()), list(override.sweep_string_iterator())
    if not values:
        raise SearchSpaceError(f"'{line}': no choices")
    # Optuna stores only None/bool/int/float/str choices: lists and dicts are kept as their override strings.
    choices = [
        value if value is None or isinstance(value, (bool, int, float, str)) else string
        for value, string in zip(values, strings)
    ]
    if len(set(map(repr, choices))) != len(choices):
        raise SearchSpaceError(f"'{line}': a choice appears twice")
    return Parameter(dist.CategoricalDistribution(choices), dict(zip(choices, strings)))

"""Value generators: points whose values move like a real process (sine, ramp, counter, random, clock, sequence,
csv, expression …), driven by one scheduler on the server's loop, with time injected for tests.

The rooms: `spec.py` (the spec language, shared by the command line, the device file, Python and HTTP),
`generators.py` and `expression.py` (value at a time, sans-I/O), `build.py` (spec → generator, every argument
checked), `target.py` (numbers → the point's type and registers: the fit rule), `scheduler.py` (buckets by update
period in a heap, sans-I/O), `simulator.py` (the run-time API and the one timer). docs/simulator.md is the
reference. Imports the protocol and the model only.
"""

from modbusd.simulate.build import DEFAULT_EVERY, MIN_EVERY, Made, WritePolicy, make
from modbusd.simulate.generators import unix_time
from modbusd.simulate.simulator import Simulator, UnknownGenerator
from modbusd.simulate.spec import GeneratorError, Spec, parse_duration, parse_spec
from modbusd.simulate.target import check_target, fitter, limits

__all__ = [
    "DEFAULT_EVERY", "MIN_EVERY", "GeneratorError", "Made", "Simulator", "Spec", "UnknownGenerator", "WritePolicy",
    "check_target", "fitter", "limits", "make", "parse_duration", "parse_spec", "unix_time",
]  # fmt: skip

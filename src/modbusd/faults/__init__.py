"""Fault injection: rules that make the server misbehave on purpose, so that a client's handling of time-outs,
exceptions and broken frames can be tested (docs/faults.md).

`rules.py` says which requests a rule matches and when it fires; `actions.py` what it does to the response;
`registry.py` keeps a server's rules and answers the sessions. Sans-I/O: the session applies the plan a fault
makes, and the transport sends its pieces on time, closes or resets the connection.
"""

from modbusd.faults.actions import Action, FaultError, parse_action
from modbusd.faults.registry import Fault, FaultPoint, Faults
from modbusd.faults.rules import FaultRule, FaultSpec, parse_rule

__all__ = ["Action", "Fault", "FaultError", "FaultPoint", "FaultRule", "FaultSpec", "Faults", "parse_action",
           "parse_rule"]  # fmt: skip

"""Interpreters of the IR: forward-mode differentiation, staging (tracing to a jaxpr,
and partial evaluation), and transposition (the backward pass)."""

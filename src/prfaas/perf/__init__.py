"""prfaas.perf (see docs/structure.md)."""

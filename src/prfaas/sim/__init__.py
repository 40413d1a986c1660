"""prfaas.sim (see docs/structure.md)."""

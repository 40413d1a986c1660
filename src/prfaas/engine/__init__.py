"""prfaas.engine (see docs/structure.md)."""

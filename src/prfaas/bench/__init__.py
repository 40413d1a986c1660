"""prfaas.bench (see docs/structure.md)."""

"""prfaas.serve (see docs/structure.md)."""

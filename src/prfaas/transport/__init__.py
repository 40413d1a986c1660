"""prfaas.transport (see docs/structure.md)."""

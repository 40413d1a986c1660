"""prfaas.catalog (see docs/structure.md)."""

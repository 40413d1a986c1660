"""prfaas.policy (see docs/structure.md)."""

"""prfaas.planner (see docs/structure.md)."""

"""prfaas.workload (see docs/structure.md)."""

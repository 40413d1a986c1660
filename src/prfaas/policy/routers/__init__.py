"""Router policies, one module each; build them by name through `prfaas.policy.registry`."""

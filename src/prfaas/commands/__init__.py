"""CLI sub-commands, one module each; each exposes `register(app)`. Kept thin: parse, call, print."""

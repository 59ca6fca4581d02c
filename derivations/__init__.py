"""Theory checks: one module per question, each `python -m derivations.<name> [--out DIR]`."""

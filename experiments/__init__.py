"""Experiments: one module per task, each `python -m experiments.<name> --profile {smoke,full}`."""

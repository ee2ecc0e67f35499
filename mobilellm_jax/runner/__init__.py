"""The sweep runner behind experiments/launch.py: sweeps.py loads the repository's sweeps/*.py
study files and expands them into validated run configs; launch.py plans, runs (locally or on
SLURM) and summarises them.
"""

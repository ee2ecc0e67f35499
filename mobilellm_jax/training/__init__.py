"""One training run and the process it runs in: loop.py (train: the run), step.py (the pure step
functions), optim.py (AdamW and the LR schedule), sharding.py (mesh and logical-axis rules),
target.py (the platform a program is compiled for), checkpointing.py, tracking.py (metrics files,
W&B, progress), dashboards.py / summary_run.py / wandb_offline.py (W&B views of a sweep),
runtime.py / host_memory.py / compile_cache.py / distributed.py (process set-up for the CLIs).
"""

"""Accelerators, and compiling for them without having them: chips.py (--target names and chip
datasheets), peaks.py (peak FLOP/s for MFU), aot.py (compile the train/eval steps for a target),
fit_search.py (settings that fit a target), fit_report.py (its results in words) and paper_fit.py
(the rows of docs/paper_fit.md).
"""

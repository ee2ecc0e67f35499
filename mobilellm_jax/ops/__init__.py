"""The performance layer: the kernels the decoder (model/decoder.py) and the loss call, each
chosen by the platform a program is compiled for (training/target.py) and tested against the plain
formula. attention.py (causal GQA: fused C++ on CPU, blocked custom-VJP, XLA, cuDNN),
tpu_attention.py (Pallas splash attention), feedforward.py, dense.py and norm.py (hand-written
VJPs), losses.py (cross-entropy fused with the head), layer_scan.py (the scan over layers) and
native/ (C++ kernels for XLA:CPU). docs/performance.md says what each does and why.
"""

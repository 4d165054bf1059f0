"""The model to train: loading it (loading.py: full, LoRA, QLoRA, attention implementation) and what changes its
layers or weights (quantisation, kernels, freezing, MoE experts, NVFP4). May import hpcft.core and hpcft.trainer."""

"""What every process that converts sets before TensorFlow is loaded, so that the same model and
options give the same artifacts on any machine.

TensorFlow's graph optimizer (grappler), which tensorflowjs runs while converting, fuses ops
differently when oneDNN is on: its remapper then also fuses hard-swish (``_FusedHardSwish``),
Tanh, Swish, Mish and GELU activations into ``_FusedConv2D``/``_FusedMatMul`` and makes ``_Mkl*``
ops, none of which TF.js runs. oneDNN is on by default on x86 and on some ARM CPUs, and nothing in
grappler's RewriterConfig turns these fusions off alone; only ``TF_ENABLE_ONEDNN_OPTS=0`` does, and
TensorFlow reads it once, the first time an op or the optimizer asks. So it is set (overriding
whatever the machine has) at the start of each conversion process, before TensorFlow is imported.
"""

from __future__ import annotations

import os

ONEDNN_SWITCH = "TF_ENABLE_ONEDNN_OPTS"


def use_machine_independent_tensorflow() -> None:
    """Turn oneDNN off for this process and its children; call before TensorFlow is imported."""
    os.environ[ONEDNN_SWITCH] = "0"

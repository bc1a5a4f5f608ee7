"""Shared test settings: one torch thread per test process.

The suite runs two pytest workers on two cores; letting each use every core oversubscribes the CPU and
made single files 10x slower.
"""

import torch

torch.set_num_threads(1)

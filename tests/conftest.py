"""Shared test settings: small thread counts so tests behave on 2-core machines."""
import torch

torch.set_num_threads(2)

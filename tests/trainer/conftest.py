import torch

# the models here are tiny: one intra-op thread is much faster than several competing for 2 shared cores
torch.set_num_threads(1)

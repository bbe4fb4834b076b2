"""Tiny model classes used to build the regression corpus (importable, so trusted pickles can load)."""

import torch
from torch import nn


class TinyNet(nn.Module):
    """Conv + Linear: 4*1*3*3 + 4 + 10*144 + 10 = 1,490 parameters."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.fc = nn.Linear(4 * 6 * 6, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).flatten(1))


TINY_PARAMETERS = 1490

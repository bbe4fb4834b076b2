"""DigitsCNN: the small convolutional network behind Model Workbench's bundled sample model.

It classifies the 8x8 handwritten-digit images of scikit-learn's ``load_digits``
data set.

Input:  float32 tensor of shape (N, 1, 8, 8), pixel values 0..16 divided by 16
        (so in the range 0..1).
Output: float32 tensor of shape (N, 10), raw logits for the digits 0..9
        (apply softmax for probabilities, argmax for the predicted digit).

The trained weights and exported files (ONNX, TorchScript, state_dict) are
produced by ``train_sample.py`` in the same folder.
"""

import torch
from torch import nn


class DigitsCNN(nn.Module):
    """Two 3x3 convolutions, one 2x2 max-pool, then a two-layer classifier head."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, kernel_size=3, padding=1),   # 16 x 8 x 8
            nn.ReLU(),
            nn.Conv2d(16, 32, kernel_size=3, padding=1),  # 32 x 8 x 8
            nn.ReLU(),
            nn.MaxPool2d(2),                              # 32 x 4 x 4
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(32 * 4 * 4, 64),
            nn.ReLU(),
            nn.Linear(64, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))

"""PyTorch peers of our networks, for the benchmarks (PyTorch is optional: imported lazily)."""


def torch_resnet_v2(stage_sizes, widths, stem: str):
  """The same pre-activation ResNet-v2 in PyTorch (``channels_last``)."""
  import torch  # pylint: disable=g-import-not-at-top (optional)
  from torch import nn  # pylint: disable=g-import-not-at-top

  class Block(nn.Module):
    def __init__(self, cin, cout, stride):
      super().__init__()
      self.bn0, self.bn1 = nn.BatchNorm2d(cin), nn.BatchNorm2d(cout)
      self.conv0 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
      self.conv1 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
      self.proj = (nn.Conv2d(cin, cout, 1, stride, bias=False)
                   if stride != 1 or cin != cout else None)

    def forward(self, x):
      pre = torch.relu(self.bn0(x))
      y = self.conv1(torch.relu(self.bn1(self.conv0(pre))))
      return y + (self.proj(pre) if self.proj is not None else x)

  if stem == "imagenet":
    layers = [nn.Conv2d(3, widths[0], 7, 2, 3, bias=False), nn.MaxPool2d(3, 2, 1)]
  else:
    layers = [nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)]
  cin = widths[0]
  for i, (size, cout) in enumerate(zip(stage_sizes, widths, strict=True)):
    for j in range(size):
      layers.append(Block(cin, cout, 2 if i > 0 and j == 0 else 1))
      cin = cout
  return nn.Sequential(*layers, nn.BatchNorm2d(cin), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                       nn.Flatten(), nn.Linear(cin, 10)).to(memory_format=torch.channels_last)

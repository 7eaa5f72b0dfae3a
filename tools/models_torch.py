"""PyTorch reference models, written to match the paper's code (gnosis; PreResNet is the bearpaw
pytorch-classification port) so that state-dict names, layouts, init and forward are the ones our
C++ models must reproduce. Used only to make golden files and speed baselines (tools/).

Deviation, on purpose: PreResNet takes an optional `block` ("basic" | "bottleneck") to force the
block type. The paper's rule (depth >= 44 -> Bottleneck, n=(depth-2)/9; else BasicBlock,
n=(depth-2)/6) is the default, so PreResNet(20) and PreResNet(56) are exactly the paper's nets;
forcing lets a tiny bottleneck net (depth 11, one block per stage) exist for tests. `in_channels`
(default 3, the paper's) lets a PreResNet take 1-channel images (Fashion-MNIST padded to 32).

VGG16 takes `in_channels` (the code's is 3) so the 1-channel Fashion-MNIST variant can be counted.

Run `/usr/bin/python3 tools/models_torch.py` to assert the parameter counts (paper-notes.md; VGG-16's
exact counts are ours, from this model).
"""
import math

import torch.nn as nn


def lenet5(num_classes=10):
    """State-dict names 0.* (conv 1->6), 3.* (conv 6->16), 7.*, 9.*, 11.* (linears). PyTorch default init."""
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.AvgPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(400, 120), nn.ReLU(),
        nn.Linear(120, 84), nn.ReLU(),
        nn.Linear(84, num_classes))


def conv3x3(in_planes, out_planes, stride=1):
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        residual = x
        out = self.conv1(self.relu(self.bn1(x)))
        out = self.conv2(self.relu(self.bn2(out)))
        if self.downsample is not None:
            residual = self.downsample(x)  # the RAW input, not the pre-activated one
        return out + residual


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes)
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, kernel_size=1, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        residual = x
        out = self.conv1(self.relu(self.bn1(x)))
        out = self.conv2(self.relu(self.bn2(out)))
        out = self.conv3(self.relu(self.bn3(out)))
        if self.downsample is not None:
            residual = self.downsample(x)
        return out + residual


class PreResNet(nn.Module):
    def __init__(self, depth, num_classes=100, block=None, in_channels=3):
        super().__init__()
        if block is None:
            block = "bottleneck" if depth >= 44 else "basic"
        if block == "bottleneck":
            assert (depth - 2) % 9 == 0, "bottleneck depth must be 9n+2"
            n, block_cls = (depth - 2) // 9, Bottleneck
        elif block == "basic":
            assert (depth - 2) % 6 == 0, "basic-block depth must be 6n+2"
            n, block_cls = (depth - 2) // 6, BasicBlock
        else:
            raise ValueError(f"unknown block {block!r}")
        self.inplanes = 16
        self.conv1 = nn.Conv2d(in_channels, 16, kernel_size=3, padding=1, bias=False)
        self.layer1 = self._make_layer(block_cls, 16, n)
        self.layer2 = self._make_layer(block_cls, 32, n, stride=2)
        self.layer3 = self._make_layer(block_cls, 64, n, stride=2)
        self.bn = nn.BatchNorm2d(64 * block_cls.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.avgpool = nn.AvgPool2d(8)
        self.fc = nn.Linear(64 * block_cls.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                m.weight.data.normal_(0, math.sqrt(2.0 / fan_out))
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.data.fill_(1)
                m.bias.data.zero_()

    def _make_layer(self, block_cls, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes * block_cls.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block_cls.expansion, kernel_size=1, stride=stride,
                          bias=False))
        layers = [block_cls(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block_cls.expansion
        for _ in range(1, blocks):
            layers.append(block_cls(self.inplanes, planes))
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.conv1(x)
        x = self.layer3(self.layer2(self.layer1(x)))
        x = self.avgpool(self.relu(self.bn(x)))
        return self.fc(x.flatten(1))


VGG16_CONFIG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


class VGG16(nn.Module):
    """VGG-16 without BN (paper code models/vgg.py, paper-notes section 2), for 32x32 inputs.

    `features`: conv3x3(pad 1, bias) -> ReLU per number, MaxPool2d(2) per "M", so the convs sit at
    indices 0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28. `classifier`: Dropout(0.5), Linear(512,
    512), ReLU, Dropout(0.5), Linear(512, 512), ReLU, Linear(512, C), parameters at 1, 4, 6.
    Conv weights N(0, sqrt(2 / (9 * out))), conv biases 0, Linear PyTorch default.
    Deviation, on purpose: `in_channels` (the code's is 3) so 1-channel Fashion-MNIST works.
    """

    def __init__(self, num_classes=100, in_channels=3):
        super().__init__()
        layers, c = [], in_channels
        for v in VGG16_CONFIG:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(c, v, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
                c = v
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Dropout(0.5), nn.Linear(512, 512), nn.ReLU(True),
            nn.Dropout(0.5), nn.Linear(512, 512), nn.ReLU(True),
            nn.Linear(512, num_classes))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                m.weight.data.normal_(0, math.sqrt(2.0 / fan_out))
                m.bias.data.zero_()

    def forward(self, x):
        x = self.features(x)
        return self.classifier(x.flatten(1))


def num_params(model):
    return sum(p.numel() for p in model.parameters())


def check_param_counts():
    counts = {
        "lenet5(10)": (num_params(lenet5(10)), 61706),
        "preresnet20(100)": (num_params(PreResNet(20, 100)), 278132),
        "preresnet56(100)": (num_params(PreResNet(56, 100)), 613556),
        "preresnet110(100)": (num_params(PreResNet(110, 100)), 1169972),
        "preresnet20(10)": (num_params(PreResNet(20, 10)), 272282),
        "preresnet56(10)": (num_params(PreResNet(56, 10)), 590426),
        "vgg16(100)": (num_params(VGG16(100)), 15291300),
        "vgg16(10, 1 channel)": (num_params(VGG16(10, in_channels=1)), 15243978),
    }
    for name, (got, want) in counts.items():
        assert got == want, f"{name}: {got} parameters, expected {want}"
    return counts


if __name__ == "__main__":
    for name, (got, _) in check_param_counts().items():
        print(f"{name}: {got:,} parameters (as expected)")

"""torchvision's ResNet / FCN / DeepLabv3 rewritten in plain torch.nn (torchvision is not installable here).

Module names and structure follow torchvision's source exactly, so
`state_dict()` keys equal those of torchvision checkpoints; used only as an
independent reference in the conversion tests.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def conv3x3(cin, cout, stride=1, dilation=1):
  return nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)


def conv1x1(cin, cout, stride=1):
  return nn.Conv2d(cin, cout, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
  expansion = 1

  def __init__(self, inplanes, planes, stride=1, downsample=None, dilation=1):
    super().__init__()
    if dilation > 1:
      raise NotImplementedError("Dilation > 1 not supported in BasicBlock")
    self.conv1 = conv3x3(inplanes, planes, stride)
    self.bn1 = nn.BatchNorm2d(planes)
    self.relu = nn.ReLU(inplace=True)
    self.conv2 = conv3x3(planes, planes)
    self.bn2 = nn.BatchNorm2d(planes)
    self.downsample = downsample

  def forward(self, x):
    identity = x if self.downsample is None else self.downsample(x)
    out = self.relu(self.bn1(self.conv1(x)))
    return self.relu(self.bn2(self.conv2(out)) + identity)


class Bottleneck(nn.Module):
  expansion = 4

  def __init__(self, inplanes, planes, stride=1, downsample=None, dilation=1):
    super().__init__()
    self.conv1 = conv1x1(inplanes, planes)
    self.bn1 = nn.BatchNorm2d(planes)
    self.conv2 = conv3x3(planes, planes, stride, dilation)
    self.bn2 = nn.BatchNorm2d(planes)
    self.conv3 = conv1x1(planes, planes * 4)
    self.bn3 = nn.BatchNorm2d(planes * 4)
    self.relu = nn.ReLU(inplace=True)
    self.downsample = downsample

  def forward(self, x):
    identity = x if self.downsample is None else self.downsample(x)
    out = self.relu(self.bn1(self.conv1(x)))
    out = self.relu(self.bn2(self.conv2(out)))
    return self.relu(self.bn3(self.conv3(out)) + identity)


class ResNet(nn.Module):
  def __init__(self, block, layers, replace_stride_with_dilation=(False, False, False)):
    super().__init__()
    self.inplanes, self.dilation = 64, 1
    self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
    self.bn1 = nn.BatchNorm2d(64)
    self.relu = nn.ReLU(inplace=True)
    self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
    self.layer1 = self._make_layer(block, 64, layers[0])
    self.layer2 = self._make_layer(block, 128, layers[1], 2, replace_stride_with_dilation[0])
    self.layer3 = self._make_layer(block, 256, layers[2], 2, replace_stride_with_dilation[1])
    self.layer4 = self._make_layer(block, 512, layers[3], 2, replace_stride_with_dilation[2])

  def _make_layer(self, block, planes, blocks, stride=1, dilate=False):
    downsample, previous_dilation = None, self.dilation
    if dilate:
      self.dilation *= stride
      stride = 1
    if stride != 1 or self.inplanes != planes * block.expansion:
      downsample = nn.Sequential(conv1x1(self.inplanes, planes * block.expansion, stride),
                                 nn.BatchNorm2d(planes * block.expansion))
    layers = [block(self.inplanes, planes, stride, downsample, previous_dilation)]
    self.inplanes = planes * block.expansion
    layers += [block(self.inplanes, planes, dilation=self.dilation) for _ in range(1, blocks)]
    return nn.Sequential(*layers)

  def forward(self, x):
    feats = {}
    x = self.relu(self.bn1(self.conv1(x)))
    feats["stem"] = x
    x = self.maxpool(x)
    for name in ("layer1", "layer2", "layer3", "layer4"):
      x = getattr(self, name)(x)
      feats[name] = x
    return feats


class FCNHead(nn.Sequential):
  def __init__(self, in_channels, channels):
    inter = in_channels // 4
    super().__init__(nn.Conv2d(in_channels, inter, 3, padding=1, bias=False),
                     nn.BatchNorm2d(inter), nn.ReLU(), nn.Dropout(0.1),
                     nn.Conv2d(inter, channels, 1))


class ASPPConv(nn.Sequential):
  def __init__(self, cin, cout, dilation):
    super().__init__(nn.Conv2d(cin, cout, 3, padding=dilation, dilation=dilation, bias=False),
                     nn.BatchNorm2d(cout), nn.ReLU())


class ASPPPooling(nn.Sequential):
  def __init__(self, cin, cout):
    super().__init__(nn.AdaptiveAvgPool2d(1), nn.Conv2d(cin, cout, 1, bias=False),
                     nn.BatchNorm2d(cout), nn.ReLU())

  def forward(self, x):
    size = x.shape[-2:]
    for mod in self:
      x = mod(x)
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class ASPP(nn.Module):
  def __init__(self, cin, rates, cout=256):
    super().__init__()
    modules = [nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout),
                             nn.ReLU())]
    modules += [ASPPConv(cin, cout, r) for r in rates]
    modules.append(ASPPPooling(cin, cout))
    self.convs = nn.ModuleList(modules)
    self.project = nn.Sequential(nn.Conv2d(len(self.convs) * cout, cout, 1, bias=False),
                                 nn.BatchNorm2d(cout), nn.ReLU(), nn.Dropout(0.5))

  def forward(self, x):
    return self.project(torch.cat([conv(x) for conv in self.convs], dim=1))


class DeepLabHead(nn.Sequential):
  def __init__(self, in_channels, num_classes, rates=(12, 24, 36)):
    super().__init__(ASPP(in_channels, rates), nn.Conv2d(256, 256, 3, padding=1, bias=False),
                     nn.BatchNorm2d(256), nn.ReLU(), nn.Conv2d(256, num_classes, 1))


class Segmentation(nn.Module):
  """torchvision's _SimpleSegmentationModel: returns {'out', 'aux'} at input size."""

  def __init__(self, backbone, classifier, aux_classifier):
    super().__init__()
    self.backbone, self.classifier, self.aux_classifier = backbone, classifier, aux_classifier

  def forward(self, x):
    size = x.shape[-2:]
    feats = self.backbone(x)
    out = F.interpolate(self.classifier(feats["layer4"]), size=size, mode="bilinear",
                        align_corners=False)
    aux = F.interpolate(self.aux_classifier(feats["layer3"]), size=size, mode="bilinear",
                        align_corners=False)
    return {"out": out, "aux": aux}


def resnet50(replace_stride_with_dilation=(False, False, False)):
  return ResNet(Bottleneck, (3, 4, 6, 3), replace_stride_with_dilation)


def segmentation_resnet50(kind: str, num_classes: int = 21):
  """fcn_resnet50 / deeplabv3_resnet50 as torchvision builds them (output stride 8)."""
  backbone = resnet50((False, True, True))
  head = FCNHead(2048, num_classes) if kind == "fcn" else DeepLabHead(2048, num_classes)
  return Segmentation(backbone, head, FCNHead(1024, num_classes))


def randomize_batch_norm(net: nn.Module) -> nn.Module:
  """Non-trivial BN statistics and affine params, so a converter's BN mapping is exercised."""
  with torch.no_grad():
    for module in net.modules():
      if isinstance(module, nn.BatchNorm2d):
        module.running_mean.uniform_(-0.5, 0.5)
        module.running_var.uniform_(0.5, 1.5)
        module.weight.uniform_(0.5, 1.5)
        module.bias.uniform_(-0.5, 0.5)
  return net

r"""Targets for models whose output is not class logits: segmentation and detection.

A target is a callable on the (selected) model output of B rows that returns (B,) scores; pass one
for every image (``target=[...]``, one per image) or one for all (``target=t``). The gradient
methods differentiate it, so each must stay differentiable in the model's output.

>>> seg = torchvision.models.segmentation.fcn_resnet50(weights=None, num_classes=3).eval()
>>> cam = camkit.GradCAM(seg, "backbone.layer4", output="out")
>>> maps = cam(x, target=[camkit.targets.SegmentationTarget(1, mask) for mask in masks])
>>> det = torchvision.models.detection.fasterrcnn_mobilenet_v3_large_320_fpn(weights=None).eval()
>>> maps = camkit.GradCAM(det, "backbone.body.16")(x, target=[DetectionTarget([3], [[10, 20, 60, 90]])])
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

import torch
from torch import Tensor


class SegmentationTarget:
    r"""A class over a pixel region (pytorch-grad-cam's ``SemanticSegmentationTarget``):

    .. math:: y = \sum_{(i, j)} m_{ij}\, S_c(i, j)

    S the (B, classes, H, W) segmentation logits, c = ``category``, m the (H, W) ``mask`` (bool or
    weights; None: the whole image).
    """

    def __init__(self, category: int, mask: Optional[Tensor] = None):
        if isinstance(category, bool) or not isinstance(category, int) or category < 0:
            raise ValueError(f"category must be a class index >= 0, got {category!r}")
        if mask is not None and (not torch.is_tensor(mask) or mask.ndim != 2):
            raise ValueError(f"mask must be an (H, W) tensor or None, got "
                             f"{tuple(mask.shape) if torch.is_tensor(mask) else type(mask).__name__}")
        self.category, self.mask = category, mask

    def __call__(self, output: Tensor) -> Tensor:
        if not torch.is_tensor(output) or output.ndim != 4:
            raise ValueError("SegmentationTarget scores (B, classes, H, W) logits; the model gives "
                             f"{tuple(output.shape) if torch.is_tensor(output) else type(output).__name__}: "
                             "pass output='out' (torchvision) or a callable that selects them")
        if self.category >= output.shape[1]:
            raise ValueError(f"category {self.category} is out of range for {output.shape[1]} classes")
        scores = output[:, self.category]
        if self.mask is not None:
            if tuple(self.mask.shape) != tuple(scores.shape[-2:]):
                raise ValueError(f"mask has shape {tuple(self.mask.shape)}, the output {tuple(scores.shape[-2:])}")
            scores = scores * self.mask.to(scores.device, scores.dtype)
        return scores.sum(dim=(-2, -1))

    def __repr__(self) -> str:
        return f"SegmentationTarget({self.category}, mask={'None' if self.mask is None else tuple(self.mask.shape)})"


class DetectionTarget:
    r"""Detected boxes that match given ones (pytorch-grad-cam's ``FasterRCNNBoxScoreTarget``):

    .. math:: y = \sum_{b} \big[\mathrm{IoU}(b, \hat b) + s(\hat b)\big]\ [\mathrm{IoU}(b, \hat b) \ge \tau]

    for each target box b with label l, \hat b the detection of label l with the largest IoU and
    s its score. The output is torchvision's detection output: a list of per-image dicts with
    ``boxes``, ``labels``, ``scores``. A row with no matching detection scores 0 (its map is zero).
    """

    def __init__(self, labels: Sequence[int], boxes: Union[Tensor, Sequence[Sequence[float]]],
                 iou_threshold: float = 0.5):
        self.labels = torch.as_tensor(labels, dtype=torch.long).reshape(-1)
        self.boxes = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4)
        if self.labels.numel() != self.boxes.shape[0]:
            raise ValueError(f"give one label per box: {self.labels.numel()} labels, {self.boxes.shape[0]} boxes")
        if not 0 <= iou_threshold <= 1:
            raise ValueError(f"iou_threshold must lie in [0, 1], got {iou_threshold}")
        self.iou_threshold = float(iou_threshold)

    def score(self, detections: dict) -> Tensor:
        """The score of one image's detections."""
        from torchvision.ops import box_iou

        missing = {"boxes", "labels", "scores"} - set(detections)
        if missing:
            raise ValueError(f"DetectionTarget needs detection dicts with boxes, labels and scores; missing {missing}")
        boxes = detections["boxes"]
        total = boxes.new_zeros(())
        if boxes.numel() == 0:
            return total
        ious = box_iou(self.boxes.to(boxes.device), boxes)  # (targets, detections)
        for t, label in enumerate(self.labels.tolist()):
            same = (detections["labels"] == label) & (ious[t] >= self.iou_threshold)
            if same.any():
                best = torch.where(same, ious[t], ious.new_full((), -1.0)).argmax()
                total = total + ious[t, best] + detections["scores"][best]
        return total

    def __call__(self, output) -> Tensor:
        if not isinstance(output, (list, tuple)) or not all(isinstance(o, dict) for o in output):
            raise ValueError("DetectionTarget scores a detection model's output: a list of per-image dicts")
        return torch.stack([self.score(detections) for detections in output])

    def __repr__(self) -> str:
        return f"DetectionTarget(labels={self.labels.tolist()}, boxes={self.boxes.tolist()})"

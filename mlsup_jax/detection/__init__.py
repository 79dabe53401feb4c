"""Static-shape building blocks of two-stage instance segmentation (Mask R-CNN, thesis §3.2).

Boxes are `(y1, x1, y2, x2)` in pixels (Matterport's order), every count is fixed at trace time
(padding + validity masks), so a whole Mask R-CNN train step is one jitted, shardable function:
`boxes` (IoU, deltas), `anchors` (FPN anchors), `nms` (greedy NMS with a fixed output count),
`roi_align` (bilinear RoIAlign over a feature pyramid), `targets` (boxes and mask targets read
from an instance label map, RPN and RoI sampling), `paste` (detections → an instance label map).
"""

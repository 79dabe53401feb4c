"""Pure Flax Linen modules. Layout is channel-last: `[B, H, W, C]` or `[B, H, W, D, C]`."""

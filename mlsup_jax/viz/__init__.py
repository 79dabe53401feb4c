"""Figures: matplotlib (Agg backend) plots of data, predictions and results, saved as PNG."""

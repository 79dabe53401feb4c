"""Host-side (numpy/scipy) evaluation metrics: segmentation overlap/distance and BAC burden."""

"""The evaluate stage: test-set metrics, test-time augmentation and the figures."""

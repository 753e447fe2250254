"""The train stage: models, augmentation, the input pipeline, the training loop, resume
snapshots and the Keras backends."""

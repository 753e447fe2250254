"""The download and preprocess stages: the official files, verified; IDX parsing; the seeded
stratified split; the samples figure."""

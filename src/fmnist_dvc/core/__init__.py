"""What every stage shares: errors, atomic writes, params.yaml reading and its base model, the
prepared arrays and the model file that stages hand on, and byte-stable PNGs."""

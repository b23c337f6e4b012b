"""Running a model without training it: forward passes reduced to the positions that count, generation,
evaluation, and text metrics."""

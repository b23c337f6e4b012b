"""The bottom layer: errors and value checks, fingerprints, ranks, the one on-disk cache, building from config."""

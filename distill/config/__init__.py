"""Configuration: the Hydra schemas, the top-level settings, and the start-up checks run before anything
is built."""

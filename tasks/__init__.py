"""arq job functions and the worker's settings."""

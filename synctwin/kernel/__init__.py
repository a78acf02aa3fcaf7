"""The kernel: models, messages, errors, configuration. Imports nothing of the project above it."""

"""The spine every method shares: state, mesh, trainer, checkpoints, writers, registries."""

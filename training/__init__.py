"""Training of the papers' ISA models on isamap patches (models, losses, metrics, trainer)."""

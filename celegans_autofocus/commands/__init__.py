"""Sub-commands of the celegans-autofocus CLI, one module each."""

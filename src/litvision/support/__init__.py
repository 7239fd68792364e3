"""What the tasks and the module share: config building, checkpoint reading, errors, option checks, DDP, the scripts' entry."""

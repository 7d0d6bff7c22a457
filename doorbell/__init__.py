"""The `doorbell` command: the composition root that wires camera, storage, web and config."""

"""lossbench's Hydra sweeper plugin (in `hydra_plugins`, where Hydra looks for plugins)."""

"""zqnode's roles (bus hub, worker, scheduler, manager, chain, poster) and the CLI."""

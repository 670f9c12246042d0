"""The chain role: an embedded devnet chain (or, later, a watcher of an external one)."""

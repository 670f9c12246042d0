"""The worker role: runs sealing and proving tasks, reports its resources."""

"""The poster role: WindowPoSt for every deadline that can be made (core, store, provers,
sector checks, the node's shell and its RPC)."""

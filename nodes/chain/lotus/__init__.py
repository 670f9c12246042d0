"""The Lotus JSON-RPC API (served by Lotus, Venus and Forest): its types, its framing, the
tokens that guard it, the devnet chain's server and the chain role's client."""

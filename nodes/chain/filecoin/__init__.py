"""Filecoin's own wire formats, byte for byte: RLE+ bitfields, addresses, and the builtin
miner actor's DAG-CBOR method parameters."""

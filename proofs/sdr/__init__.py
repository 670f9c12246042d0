"""Stacked DRG (SDR) sealing, PC1 side: graph parents, the parent cache, labelling and
PoRep challenges.  Modules: chacha, drg, feistel, cache, labels, challenges."""

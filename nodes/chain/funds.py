"""FIL amounts, the gas a message uses and the base fee, for the devnet chain.

Amounts are integers of nanoFIL (10^-9 FIL; Filecoin counts attoFIL, but msgpack keeps
64-bit integers, and 2^63 nanoFIL is 9 billion FIL, more than will ever exist). The
base fee is quoted in attoFIL per gas unit, as Filecoin quotes it. The base fee follows
Filecoin's rule (Lotus's ComputeNextBaseFee, one block per tipset): it moves by at most
1/8 per epoch towards the gas used in the last tipset against the target, and never
below the minimum. The gas a message uses is this chain's own schedule, of Filecoin's
order of magnitude but not its metering: a fixed cost per message and per method, and a
cost per sector or partition the message names. A proof is charged as a SNARK would be,
whatever its size (this chain's proofs are vanilla, much larger). FIP-0100 (network
version 25) replaced the batch balancer's aggregation fee with a daily fee per sector;
this chain charges neither.
"""
from __future__ import annotations

from decimal import Decimal, InvalidOperation

FIL = 10 ** 9                          # nanoFIL
MAX_SUPPLY = 2_000_000_000 * FIL       # Filecoin's whole supply (FIL_BASE): no amount is larger
ATTO_PER_NANO = 10 ** 9
MESSAGE_GAS = 2_000_000                # every message: its inclusion, receipt and nonce

# method -> (fixed gas, gas per unit); the units are counted by _units below
_SCHEDULE: dict[str, tuple[int, int]] = {
    "PreCommitSector": (20_000_000, 0),
    "PreCommitSectorBatch2": (10_000_000, 12_000_000),          # per sector
    "ProveCommitSector": (60_000_000, 0),
    "ProveCommitSectors3": (10_000_000, 55_000_000),            # per sector proof
    "SubmitWindowedPoSt": (25_000_000, 5_000_000),              # per partition
    "DeclareFaults": (10_000_000, 200_000),                     # per sector
    "DeclareFaultsRecovered": (10_000_000, 200_000),
    "TerminateSectors": (20_000_000, 1_000_000),
    "ExtendSectorExpiration2": (10_000_000, 500_000),
    "ProveReplicaUpdates3": (10_000_000, 60_000_000),           # per sector update
}
AGGREGATE_GAS = (20_000_000, 10_000_000)   # ProveCommitSectors3 with an aggregate proof


def gas_used(method: str, params) -> int:
    """The gas a message calling `method` with the decoded `params` uses, whether it
    succeeds or not."""
    fixed, per = _SCHEDULE[method]
    if method == "ProveCommitSectors3" and params.aggregate_proof:
        fixed, per = AGGREGATE_GAS
    return MESSAGE_GAS + fixed + per * _units(method, params)


def _units(method: str, p) -> int:
    if method == "PreCommitSectorBatch2":
        return len(p.sectors)
    if method == "ProveCommitSectors3":
        return len(p.sector_activations)
    if method == "SubmitWindowedPoSt":
        return len(p.partitions)
    if method == "ProveReplicaUpdates3":
        return len(p.sector_updates)
    decls = {"DeclareFaults": "faults", "DeclareFaultsRecovered": "recoveries",
             "TerminateSectors": "terminations", "ExtendSectorExpiration2": "extensions"}.get(method)
    return sum(len(d.sectors) for d in getattr(p, decls)) if decls else 0


def gas_fee(gas: int, base_fee: int) -> int:
    """nanoFIL for `gas` units at `base_fee` attoFIL each (rounded up)."""
    return -(-gas * base_fee // ATTO_PER_NANO)


BASE_FEE_MAX_CHANGE_DENOM = 8          # Filecoin's BaseFeeMaxChangeDenom


def next_base_fee(base_fee: int, gas_used_in_tipset: int, target: int, minimum: int) -> int:
    """The base fee of the next tipset (Lotus's ComputeNextBaseFee for one block)."""
    change = base_fee * (gas_used_in_tipset - target) // target // BASE_FEE_MAX_CHANGE_DENOM
    return max(base_fee + change, minimum)


def parse_fil(text: str) -> int:
    """'1.5', '1.5 FIL' or '3 nFIL' -> nanoFIL. ValueError for anything else."""
    words = str(text).strip().lower().split()
    units = {"fil": FIL, "nfil": 1}
    if not 1 <= len(words) <= 2 or (len(words) == 2 and words[1] not in units):
        raise ValueError(f"not an amount of FIL: {text!r} (e.g. 10, 0.5 FIL, 100 nFIL)")
    try:
        amount = Decimal(words[0]) * units[words[1] if len(words) == 2 else "fil"]
    except InvalidOperation:
        raise ValueError(f"not an amount of FIL: {text!r} (e.g. 10, 0.5 FIL, 100 nFIL)") from None
    if not amount.is_finite() or amount != amount.to_integral_value() or amount < 0:
        raise ValueError(f"not an amount of FIL: {text!r} (at least 0, at most 9 decimals)")
    if amount > MAX_SUPPLY:
        raise ValueError(f"{text!r} is more FIL than will ever exist ({MAX_SUPPLY // FIL})")
    return int(amount)


def format_fil(nano: int) -> str:
    """nanoFIL as FIL, every significant decimal kept: 1500000000 -> '1.5 FIL'."""
    sign, nano = ("-" if nano < 0 else ""), abs(nano)
    whole, frac = divmod(nano, FIL)
    decimals = f"{frac:09d}".rstrip("0")
    return f"{sign}{whole}{'.' + decimals if decimals else ''} FIL"

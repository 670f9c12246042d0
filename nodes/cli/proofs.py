"""`zqnode proofs ...`: CommP, sealing, WindowPoSt and unsealing on this machine.

    zqnode proofs commp PATH [--json]
    zqnode proofs seal --sector-size 2KiB --miner 1000 --sector 1 --ticket HEX64 --out DIR
                       [--seal-proof StackedDrg2KiBV1_1] [--data PATH] [--seed HEX64] [--json]
    zqnode proofs window-post --sealed DIR [--sealed DIR ...] --randomness HEX64 [--json]
    zqnode proofs unseal --sealed DIR --out FILE [--piece N]
    zqnode proofs plan --sector-size 32GiB [--cores N] [--json]
    zqnode proofs snap encode --sealed DIR --data FILE --out DIR [--json]
    zqnode proofs snap decode --updated DIR --sealed DIR --out FILE [--piece N]
    zqnode proofs snap prove --updated DIR --sealed DIR --out FILE
    zqnode proofs snap verify --proof FILE --sector-size 2KiB --comm-r-old CID --comm-d-new CID --comm-r-new CID

The commands parse options, call proofs (seal: proofs.seal.seal_sector) and print. Bad
input is a one-line error and a non-zero exit; nothing is left half-written (seal builds
the sector in a temporary directory next to DIR and renames it at the end).
Progress goes to stderr when it is a terminal (or with --progress): a bar of the bytes
read for commp, one line per stage with the elapsed time for the others.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import sys
from pathlib import Path

import click
import msgspec

from zqnode.nodes.cli.common import MinerId, age_text, size_text, to_json
from zqnode.nodes.observe import progress
from zqnode.proofs import commp as commp_mod
from zqnode.proofs import fr32, params, plan, post, seal, snap, update
from zqnode.proofs.backend import BACKEND_NAMES, BackendUnavailable, get_backend
from zqnode.proofs.cid import parse_piece_cid, parse_sealed_cid, piece_cid_v1, sealed_cid
from zqnode.proofs.sector import load_meta, write_atomic

# Errors of our own modules that mean "bad input or bad files": shown as one line.
_INPUT_ERRORS = (ValueError, OSError)


def _clock(show: bool | None, steps: int = 0) -> progress.StepProgress:
    """Progress lines on stderr, '[  1.2s] [###...] 2/5 message', when wanted."""
    return progress.StepProgress(sys.stderr if progress.wanted(show) else None,
                                 steps)


def _fail(message: str) -> click.ClickException:
    return click.ClickException(" ".join(str(message).split()))


def _hex32(value: str, option: str) -> bytes:
    text = value.strip().lower()
    text = text[2:] if text.startswith("0x") else text
    if not re.fullmatch(r"[0-9a-f]*", text) or len(text) % 2:
        raise _fail(f"{option} must be hex (64 hex digits for 32 bytes), got {value!r}")
    raw = bytes.fromhex(text)
    if len(raw) != 32:
        raise _fail(f"{option} must be 32 bytes (64 hex digits), got {len(raw)} bytes")
    return raw


def _backend(name: str):
    try:
        return get_backend(name)
    except BackendUnavailable as e:
        raise _fail(str(e)) from None


def _emit(record: dict, as_json: bool) -> None:
    if as_json:
        click.echo(to_json(record))
        return
    width = max(map(len, record))
    for key, value in record.items():
        if isinstance(value, (dict, list)):
            value = json.dumps(value)
        click.echo(f"{key:<{width}}  {value}")


backend_option = click.option("--backend", type=click.Choice(BACKEND_NAMES), default="auto",
                              show_default=True, help="Where the heavy hashing runs.")
json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
progress_option = click.option("--progress/--no-progress", "show_progress", default=None,
                               help="Progress on stderr [default: when stderr is a terminal].")
parent_cache_option = click.option(
    "--parent-cache", "parent_cache", type=click.Path(file_okay=False), default=None,
    envvar="ZQNODE_PARENT_CACHE", help="SDR parent cache directory [default: ~/.zqnode/parent-cache].")


@click.group("proofs")
def proofs_group() -> None:
    """Filecoin proofs on this machine: CommP, seal, WindowPoSt, unseal, SnapDeals."""


@proofs_group.command("commp")
@click.argument("path", type=click.Path(dir_okay=False))
@backend_option
@json_option
@progress_option
def commp_command(path: str, backend: str, as_json: bool, show_progress: bool | None) -> None:
    """CommP of a file: piece CIDs v1 and v2, payload and padded sizes."""
    impl = _backend(backend)
    stderr = sys.stderr
    try:
        if progress.wanted(show_progress, stderr):
            with open(path, "rb") as raw:
                bar = progress.ByteProgress(stderr, Path(path).stat().st_size, "commp")
                result = commp_mod.commp(progress.CountingReader(raw, bar), root=impl.sha254_root)
                bar.finish()
        else:
            result = commp_mod.commp(path, root=impl.sha254_root)
    except commp_mod.PayloadTooSmall as e:
        raise _fail(f"{path}: {e}") from None
    except _INPUT_ERRORS as e:
        raise _fail(f"cannot compute CommP of {path}: {e}") from None
    _emit({"piece_cid": result.cid(), "piece_cid_v2": result.cid_v2(),
           "payload_size": result.payload_size, "padded_size": result.padded_size}, as_json)


def _seal_proof_for(sector_size: str | None, seal_proof_name: str | None) -> params.SealProof:
    try:
        size = params.parse_sector_size(sector_size) if sector_size else None
        if seal_proof_name:
            p = params.seal_proof(seal_proof_name)
        elif size is not None:
            p = params.seal_proof(5 + list(params.SECTOR_SIZES).index(size))   # the V1_1 proof
        else:
            raise _fail("give --sector-size or --seal-proof")
    except params.ProofParamsError as e:
        raise _fail(str(e)) from None
    if size is not None and p.sector_size != size:
        raise _fail(f"--seal-proof {p.name} is for {p.sector.name} sectors, not --sector-size {sector_size}")
    return p


def _fresh_out(out: str) -> Path:
    target = Path(out)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise _fail(f"--out {out} already exists and is not an empty directory")
    return target


@proofs_group.command("seal")
@click.option("--sector-size", default=None, help="2KiB, 8MiB, 512MiB, 32GiB or 64GiB.")
@click.option("--seal-proof", "seal_proof_name", default=None,
              help="Registered seal proof, name or id [default: V1_1 of the size].")
@click.option("--miner", required=True, type=MinerId(), help="Miner actor id (1000, f01000 or t01000).")
@click.option("--sector", "sector_number", required=True, type=click.IntRange(0, 2 ** 63 - 1))
@click.option("--ticket", required=True, help="PreCommit ticket, 64 hex digits.")
@click.option("--data", "data_path", type=click.Path(dir_okay=False), default=None,
              help="The piece to seal [default: none, a committed-capacity sector of zeros].")
@click.option("--out", "out", required=True, type=click.Path(), help="Sector directory to create.")
@click.option("--seed", default=None, help="Interactive PoRep seed (64 hex): also run C1 and verify.")
@click.option("--finalize", "do_finalize", is_flag=True, help="Run FIN at the end (drops the layers).")
@click.option("--procs", type=click.IntRange(1, 256), default=1, show_default=True,
              help="Processes PC2 splits its hashing across (the CPU backend).")
@backend_option
@parent_cache_option
@json_option
@progress_option
def seal_command(sector_size, seal_proof_name, miner, sector_number, ticket, data_path, out, seed,
                 do_finalize, procs, backend, parent_cache, as_json, show_progress) -> None:
    """Seal a sector into --out (AP, PC1, PC2; C1 with --seed): comm_d, comm_r, replica_id."""
    p = _seal_proof_for(sector_size, seal_proof_name)
    ticket_bytes = _hex32(ticket, "--ticket")
    seed_bytes = _hex32(seed, "--seed") if seed is not None else None
    impl = _backend(backend)
    target = _fresh_out(out)
    capacity = fr32.unpadded_size(p.sector_size)
    if data_path is not None:
        try:
            size = Path(data_path).stat().st_size
        except OSError as e:
            raise _fail(f"cannot read --data {data_path}: {e}") from None
        if size > capacity:
            raise _fail(f"--data {data_path} is {size} bytes; a {p.sector.name} sector holds "
                        f"at most {capacity}")
        if size < commp_mod.MIN_PAYLOAD:
            raise _fail(f"--data {data_path} is {size} bytes; a piece needs at least {commp_mod.MIN_PAYLOAD}")
    clock = _clock(show_progress, seal.seal_steps(p.id, data=data_path is not None, seed=seed_bytes,
                                                  then_finalize=do_finalize))
    try:
        sealed = seal.seal_sector(target, ticket_bytes, seal_proof=p.id, miner=miner,
                                  sector=sector_number, data=data_path, seed=seed_bytes,
                                  then_finalize=do_finalize, parent_cache_dir=parent_cache,
                                  backend=impl, procs=procs, progress=clock)
    except _INPUT_ERRORS as e:
        raise _fail(str(e)) from None
    pc1, pc2, c1 = sealed.pc1, sealed.pc2, sealed.c1
    record = {"sector_dir": str(sealed.sector_dir), "seal_proof": p.name, "sector_size": p.sector_size,
              "miner": f"t0{miner}", "sector": sector_number,
              "comm_d": pc2.comm_d_cid(), "comm_r": pc2.comm_r_cid(),
              "replica_id": pc1.replica_id.hex(), "comm_c": pc2.comm_c.hex(),
              "comm_r_last": pc2.comm_r_last.hex(),
              "pieces": [{"piece_cid": info.cid(), "payload_size": info.payload_size,
                          "padded_size": info.padded_size, "offset": info.offset}
                         for info in sealed.pieces]}
    if c1 is not None:                     # seal_sector raised unless it verified
        record.update({"porep_challenges": c1.challenges, "porep_proof_file": str(sealed.proof_file),
                       "porep_proof_bytes": len(c1.proof), "porep_verified": True})
    record.update({"backend": pc2.backend, "seconds": round(clock.elapsed(), 3)})
    _emit(record, as_json)


class _WindowPostFile(msgspec.Struct, array_like=True):
    """What `window-post` writes: every partition's proof with what it proves."""
    seal_proof: int
    post_proof: int
    randomness: bytes
    partitions: list[tuple[int, list[tuple[int, bytes]], bytes]]   # (index, sectors, proof)


@proofs_group.command("window-post")
@click.option("--sealed", "sealed_dirs", multiple=True, required=True, type=click.Path(file_okay=False),
              help="A sealed sector's directory (repeatable).")
@click.option("--randomness", required=True,
              help="Canonical challenge randomness, 64 hex (rand[31] & 0xC0 must be 0).")
@click.option("--out", "out", type=click.Path(dir_okay=False), default=None,
              help="Where to write the proof [default: FIRST_SEALED_DIR/window-post-<rand>.proof].")
@click.option("--post-proof", "post_proof_name", default=None,
              help="WindowPoSt proof type, name or id [default: the V1_1 type of the size].")
@backend_option
@json_option
@progress_option
def window_post_command(sealed_dirs, randomness, out, post_proof_name, backend, as_json,
                        show_progress) -> None:
    """Prove and verify WindowPoSt over sealed sectors; exit 1 unless every sector verifies."""
    rand = _hex32(randomness, "--randomness")
    impl = _backend(backend)
    clock = _clock(show_progress)
    try:
        post.check_randomness(rand)
        refs = post.sector_refs(sealed_dirs)
        seal_proof_id = load_meta(sealed_dirs[0]).seal_proof
        _, post_type = post.window_post_type(seal_proof_id, post_proof_name)
        result = post.generate_window_post(seal_proof_id, rand, refs, post_proof=post_type,
                                           backend=impl, progress=clock)
    except _INPUT_ERRORS as e:
        raise _fail(str(e)) from None
    verified = bool(result.partitions) and all(
        post.verify_window_post(seal_proof=seal_proof_id, randomness=rand, sectors=part.sectors,
                                proof=part.proof, partition=part.index, post_proof=post_type)
        for part in result.partitions)
    clock(f"verified: {verified}")
    path = Path(out) if out else Path(sealed_dirs[0]) / f"window-post-{rand[:4].hex()}.proof"
    if result.partitions:
        try:
            write_atomic(path, msgspec.msgpack.encode(_WindowPostFile(
                seal_proof_id, post_type.id, rand,
                [(part.index, part.sectors, part.proof) for part in result.partitions])))
        except OSError as e:
            raise _fail(f"cannot write the proof to {path}: {e}") from None
    record = {
        "seal_proof": params.seal_proof(seal_proof_id).name, "post_proof": post_type.name,
        "randomness": rand.hex(),
        "challenges": {str(number): leaves for part in result.partitions
                       for (number, _), leaves in zip(part.sectors, part.challenges)},
        "partitions": [{"index": part.index, "sectors": [n for n, _ in part.sectors],
                        "proof_bytes": len(part.proof)} for part in result.partitions],
        "skipped": [{"sector": number, "reason": reason} for number, reason in result.skipped],
        "proof_file": str(path) if result.partitions else None,
        "verified": verified, "backend": impl.name, "seconds": round(clock.elapsed(), 3)}
    _emit(record, as_json)
    if result.skipped:
        raise _fail("; ".join(f"sector {n} skipped: {reason}" for n, reason in result.skipped))
    if not verified:
        raise _fail("the WindowPoSt proof does not verify")


@proofs_group.command("unseal")
@click.option("--sealed", "sealed_dir", required=True, type=click.Path(file_okay=False))
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False))
@click.option("--piece", type=click.IntRange(0), default=None,
              help="Only this piece's payload [default: the whole sector's unpadded bytes].")
@backend_option
@parent_cache_option
@json_option
@progress_option
def unseal_command(sealed_dir, out, piece, backend, parent_cache, as_json, show_progress) -> None:
    """Write a sealed sector's data back out (recomputing the labels if they were dropped)."""
    impl = _backend(backend)
    clock = _clock(show_progress)
    try:
        written = seal.unseal(sealed_dir, out, piece=piece, parent_cache_dir=parent_cache,
                              backend=impl, progress=clock)
        meta = load_meta(sealed_dir)
    except _INPUT_ERRORS as e:
        raise _fail(str(e)) from None
    _emit({"out": str(out), "bytes": written, "sector": meta.sector,
           "comm_d": piece_cid_v1(meta.hex_field("comm_d")),
           "comm_r": sealed_cid(meta.hex_field("comm_r")),
           "backend": impl.name, "seconds": round(clock.elapsed(), 3)}, as_json)


def _took(seconds: float) -> str:
    return f"{seconds:.1f}s" if seconds < 60 else age_text(seconds)


@proofs_group.command("plan")
@click.option("--sector-size", default=None, help="2KiB, 8MiB, 512MiB, 32GiB or 64GiB.")
@click.option("--seal-proof", "seal_proof_name", default=None,
              help="Registered seal proof, name or id [default: V1_1 of the size].")
@click.option("--cores", type=click.IntRange(1, 4096), default=None,
              help="Cores for one sector [default: this machine's].")
@backend_option
@json_option
def plan_command(sector_size, seal_proof_name, cores, backend, as_json) -> None:
    """Disk, memory and time each stage of one sector needs, from rates measured here."""
    p = _seal_proof_for(sector_size, seal_proof_name)
    impl = _backend(backend)
    cores = cores or os.cpu_count() or 1
    try:
        plan.check(p)                                  # before a measurement it could not use
        out = plan.summary(p, plan.measure(impl, p.layers), cores)
    except ValueError as e:
        raise _fail(str(e)) from None
    if as_json:
        click.echo(to_json(out))
        return
    click.echo(f"{p.sector.name} sector ({p.name}) on {cores} cores, {impl.name} backend, "
               f"at the rates measured now on this machine ({out['cpus_here']} CPUs)")
    click.echo(f"{'stage':<18} {'disk':>11} {'memory':>10} {'time':>8}")
    for row in out["stages"]:
        disk = ("+" if row["disk_bytes"] > 0 else "") + size_text(row["disk_bytes"])
        click.echo(f"{row['name']:<18} {disk:>11} {size_text(row['memory_bytes']):>10} "
                   f"{_took(row['seconds']):>8}  {row['note']}")
    click.echo(f"peak disk {size_text(out['peak_disk_bytes'])}, kept after FIN "
               f"{size_text(out['kept_disk_bytes'])} (both with the parent cache); peak memory "
               f"{size_text(out['peak_memory_bytes'])}; AP to FIN {_took(out['seal_seconds'])}")


# -- SnapDeals --------------------------------------------------------------------------------------

@proofs_group.group("snap")
def snap_group() -> None:
    """SnapDeals by hand: put data into a CC sector's replica (no sealing), take it back,
    prove and verify the update."""


def _commitment(text: str, option: str, parse) -> bytes:
    try:
        value = parse(text)
    except ValueError as e:
        raise _fail(f"{option}: {e}") from None
    if not isinstance(value, bytes):        # a piece CID v2 carries a size too
        raise _fail(f"{option}: give the piece CID v1 (baga6ea4sea...) of the sector's data")
    return value


@snap_group.command("encode")
@click.option("--sealed", "sealed_dir", required=True, type=click.Path(file_okay=False),
              help="The CC sector (sealed, its replica kept): the sector key.")
@click.option("--data", "data_path", required=True, type=click.Path(dir_okay=False),
              help="The deal data: one piece, fr32-padded here.")
@click.option("--out", "out", required=True, type=click.Path(), help="The updated sector's directory, to create.")
@backend_option
@json_option
@progress_option
def snap_encode_command(sealed_dir, data_path, out, backend, as_json, show_progress) -> None:
    """Encode DATA into the replica of the CC sector in --sealed, as a new sector directory."""
    impl = _backend(backend)
    clock = _clock(show_progress)
    final = _fresh_out(out)
    tmp = final.with_name(f".{final.name}.snap-tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        done = snap.encode(sealed_dir, data_path, tmp, backend=impl, progress=clock)
        os.replace(tmp, final)
    except _INPUT_ERRORS as e:
        raise _fail(str(e)) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _emit({"out": str(final), **done.record(), "backend": impl.name,
           "seconds": round(clock.elapsed(), 3)}, as_json)


@snap_group.command("decode")
@click.option("--updated", "updated_dir", required=True, type=click.Path(file_okay=False))
@click.option("--sealed", "sealed_dir", required=True, type=click.Path(file_okay=False),
              help="The CC sector it was updated from (the sector key).")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False))
@click.option("--piece", type=click.IntRange(0), default=None,
              help="Only this piece's payload [default: the whole sector's unpadded bytes].")
@backend_option
@json_option
@progress_option
def snap_decode_command(updated_dir, sealed_dir, out, piece, backend, as_json, show_progress) -> None:
    """Write an updated sector's data back out, checked against its comm_d."""
    impl = _backend(backend)
    clock = _clock(show_progress)
    try:
        written = snap.decode(updated_dir, sealed_dir, out, piece=piece, backend=impl, progress=clock)
        meta = load_meta(updated_dir)
    except _INPUT_ERRORS as e:
        raise _fail(str(e)) from None
    _emit({"out": str(out), "bytes": written, "sector": meta.sector,
           "comm_d_new": piece_cid_v1(meta.hex_field("comm_d")), "backend": impl.name,
           "seconds": round(clock.elapsed(), 3)}, as_json)


@snap_group.command("prove")
@click.option("--updated", "updated_dir", required=True, type=click.Path(file_okay=False))
@click.option("--sealed", "sealed_dir", required=True, type=click.Path(file_okay=False),
              help="The CC sector it was updated from (the sector key).")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False), help="The proof file to write.")
@backend_option
@json_option
@progress_option
def snap_prove_command(updated_dir, sealed_dir, out, backend, as_json, show_progress) -> None:
    """The vanilla update proof of every partition, checked, written to --out."""
    impl = _backend(backend)
    clock = _clock(show_progress)
    try:
        proof = snap.prove(updated_dir, sealed_dir, backend=impl, progress=clock)
        data = update.encode_proof(proof)
        write_atomic(out, data)
        meta = load_meta(updated_dir)
    except _INPUT_ERRORS as e:
        raise _fail(str(e)) from None
    _emit({"out": str(out), "bytes": len(data), "update_proof": update.update_proof(proof.update_proof).name,
           "partitions": len(proof.partitions),
           "comm_r_old": sealed_cid(bytes.fromhex(meta.update.comm_r_old)),
           "comm_d_new": piece_cid_v1(meta.hex_field("comm_d")), "comm_r_new": sealed_cid(meta.hex_field("comm_r")),
           "seconds": round(clock.elapsed(), 3)}, as_json)


@snap_group.command("verify")
@click.option("--proof", "proof_path", required=True, type=click.Path(dir_okay=False))
@click.option("--comm-r-old", default=None, help="The CC sector's sealed CID (bagboea4b5abc...).")
@click.option("--comm-d-new", default=None, help="The data's piece CID v1 (baga6ea4sea...).")
@click.option("--comm-r-new", default=None, help="The updated sector's sealed CID.")
@click.option("--sector-size", default=None, help="The sector's size (2KiB ... 64GiB): its update proof type.")
@click.option("--updated", "updated_dir", default=None, type=click.Path(file_okay=False),
              help="Take the three commitments and the size from this updated sector's directory instead.")
@json_option
def snap_verify_command(proof_path, comm_r_old, comm_d_new, comm_r_new, sector_size, updated_dir, as_json) -> None:
    """Check an update proof against the sector's size and three commitments; exit status 1
    when it fails."""
    given = (comm_r_old, comm_d_new, comm_r_new, sector_size)
    if updated_dir is not None and any(given) or updated_dir is None and not all(given):
        raise click.UsageError("give --sector-size, --comm-r-old, --comm-d-new and --comm-r-new, or --updated DIR")
    if updated_dir is not None:
        try:
            meta = load_meta(updated_dir)
            if meta.update is None:
                raise _fail(f"{updated_dir} is not an updated sector")
            kind = update.for_sector_size(meta.sector_size)
            old, data, new = bytes.fromhex(meta.update.comm_r_old), meta.hex_field("comm_d"), meta.hex_field("comm_r")
        except _INPUT_ERRORS as e:
            raise _fail(str(e)) from None
    else:
        try:
            kind = update.update_proof(sector_size)
        except update.UpdateError as e:
            raise _fail(f"--sector-size: {e}") from None
        old = _commitment(comm_r_old, "--comm-r-old", parse_sealed_cid)
        data = _commitment(comm_d_new, "--comm-d-new", parse_piece_cid)
        new = _commitment(comm_r_new, "--comm-r-new", parse_sealed_cid)
    try:
        with open(proof_path, "rb") as f:
            raw = f.read(update.MAX_PROOF_BYTES + 1)
    except OSError as e:
        raise _fail(f"cannot read {proof_path}: {e}") from None
    if len(raw) > update.MAX_PROOF_BYTES:
        raise _fail(f"{proof_path} is over {update.MAX_PROOF_BYTES} bytes: no update proof is that big")
    try:
        proof = update.decode_proof(raw)
    except update.UpdateError as e:
        raise _fail(str(e)) from None
    ok = update.verify(proof, update_proof=kind.id, comm_r_old=old, comm_d_new=data, comm_r_new=new)
    _emit({"valid": ok, "update_proof": kind.name,
           "comm_r_old": sealed_cid(old), "comm_d_new": piece_cid_v1(data), "comm_r_new": sealed_cid(new)}, as_json)
    if not ok:
        sys.exit(1)


COMMANDS = [proofs_group]

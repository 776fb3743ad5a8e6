"""Whole-file encryption (D.2.2) on the SFTP read path: MB/s and peak RSS, encrypted vs clear.

    python -m bench.sftp_crypto [--mb 100] [--sizes 25,100] [--cipher aes|sm4]

What the source does with a spooled file, timed per file in a fresh child process (so its peak
RSS is this work alone): the identity pass (clear: SHA-256 of the file; encrypted: every chunk
decrypted and authenticated, SHA-256 of the plaintext) and the record pass (``read_records`` over
the file or over its authenticated plaintext — what validation and emission each do once). The
same CSV (the rows of ``bench.sftp``, GBK) in clear and encrypted, in the same run. Peak RSS is
that of the two passes (``VmHWM`` reset after the imports and key loading; Linux), next to the RSS
before them, for every size: streamed decryption keeps it flat, whatever the file's size. The keys are
the test keys of tests/fixtures/keys (RSA-2048), loaded before the clock starts.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.sftp import write_csv

KEYS = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "keys"


def _blocks(path: Path, block_bytes: int = 1 << 20):  # type: ignore[no-untyped-def]  # bench helper
    with path.open("rb") as fh:
        yield from iter(lambda: fh.read(block_bytes), b"")


def encrypt_file(clear: Path, out: Path, cipher: str) -> None:
    """Encrypt as our sink would (a fresh data key, the test partner key wrapping it), streamed."""
    from connectors.sftp.config import FileEncryption
    from transforms.crypto.filestream import encrypt_chunks
    from transforms.crypto.keys import ContractKeys

    block = FileEncryption.model_validate({"cipher": cipher, "partner_keys": [
        {"id": "hub-2026b", "file": str(KEYS / "test-hub-2026b.pub.pem")}]})
    contract = block.contract(None, "partner_keys", "bench")
    key_id, public = ContractKeys(contract).public_key()
    with out.open("wb") as fh:
        for piece in encrypt_chunks(_blocks(clear), cipher=block.cipher, key_bits=256, spec=contract.key_wrap,
                                    key_id=key_id, public=public, chunk=block.chunk_bytes):
            fh.write(piece)


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _reset_peak() -> None:
    """Linux: make VmHWM (peak RSS) the current RSS, so the peak measured is the passes', not the imports'."""
    Path("/proc/self/clear_refs").write_text("5")


def child(mode: str, path: Path, cipher: str) -> dict[str, float]:
    """One file's identity pass and record pass; the numbers on stdout as JSON."""
    from connectors.sftp.config import FileEncryption, SftpSourceConfig
    from connectors.sftp.filecrypto import FileDecryption
    from connectors.sftp.records import read_records
    from connectors.sftp.source import sha256_file

    cfg = SftpSourceConfig.model_validate({"partner": "boss", "connection": {"embedded": True}, "dir": "/in",
                                           "encoding": "gbk"})
    stop = threading.Event()
    dec = None
    if mode == "encrypted":
        dec = FileDecryption(FileEncryption.model_validate({"cipher": cipher, "our_keys": [
            {"id": "hub-2026b", "file": str(KEYS / "test-hub-2026b.key.pem")}]}), None, "bench")
        dec.warm()
    rss_before = _status_mb("VmRSS")
    _reset_peak()
    started = time.perf_counter()
    if dec is None:
        sha256_file(path, stop)
        opener = None
    else:
        _digest, refused = dec.authenticate(path, stop)
        assert refused is None, refused
        decryption = dec

        def opener():  # type: ignore[no-untyped-def]  # bench helper
            return decryption.open(path)
    identity = time.perf_counter() - started
    records = sum(1 for _ in read_records(path, cfg, b"bench", stop, opener))
    total = time.perf_counter() - started
    return {"identity_s": identity, "records_s": total - identity, "total_s": total, "records": records,
            "rss_before_mb": rss_before, "peak_rss_mb": _status_mb("VmHWM")}


def run_child(mode: str, path: Path, cipher: str) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-m", "bench.sftp_crypto", "--child", mode, str(path), "--cipher", cipher],
                         check=True, capture_output=True, text=True)
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=int, default=100, help="the file whose MB/s is compared")
    parser.add_argument("--sizes", default="25", help="other sizes (MB) whose peak RSS is compared")
    parser.add_argument("--cipher", choices=["aes", "sm4"], default="aes")
    parser.add_argument("--child", nargs=2, metavar=("MODE", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], Path(args.child[1]), args.cipher)))
        return
    sizes = sorted({args.mb, *(int(s) for s in args.sizes.split(",") if s)})
    print(f"whole-file encryption, {args.cipher}-gcm, 64 KiB chunks, RSA-2048 OAEP; identity pass + record pass")
    print(f"{'MB':>5} {'mode':<10} {'identity MB/s':>13} {'records MB/s':>12} {'total MB/s':>10} "
          f"{'records/s':>10} {'RSS before MB':>13} {'peak during MB':>14}")
    with tempfile.TemporaryDirectory(prefix="bench-sftp-crypto-") as tmp:
        for mb in sizes:
            clear = Path(tmp) / f"clear-{mb}.csv"
            write_csv(clear, mb)
            enc = Path(tmp) / f"enc-{mb}.csv"
            encrypt_file(clear, enc, args.cipher)
            size_mb = clear.stat().st_size / 1024 / 1024
            for mode, path in (("clear", clear), ("encrypted", enc)):
                r = run_child(mode, path, args.cipher)
                print(f"{mb:>5} {mode:<10} {size_mb / r['identity_s']:>13.1f} {size_mb / r['records_s']:>12.1f} "
                      f"{size_mb / r['total_s']:>10.1f} {r['records'] / r['total_s']:>10.0f} "
                      f"{r['rss_before_mb']:>13.1f} {r['peak_rss_mb']:>14.1f}", flush=True)
            clear.unlink()
            enc.unlink()


if __name__ == "__main__":
    main()

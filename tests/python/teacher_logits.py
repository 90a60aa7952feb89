#!/usr/bin/env python3
"""Teacher-logit files as an external teacher (MambaMOS, KDMOS's Python code) would write them.

    teacher_logits.py check DIR SEQ_ROOT SEQ   every DIR/<SEQ>_<k>.npy is float32 [N, 4], N the points
                                               of velodyne/<k>.bin; prints a JSON summary
    teacher_logits.py copy SRC DST             loads each SRC/*.npy with numpy and np.save()s it to DST
    teacher_logits.py short FILE               rewrites FILE without its last row
    teacher_logits.py transpose FILE           rewrites FILE as [4, N]
"""
import json
import sys
from pathlib import Path

import numpy as np


def check(directory, root, seq):
    velodyne = Path(root) / "sequences" / seq / "velodyne"
    summary = {}
    for bin_path in sorted(velodyne.glob("*.bin")):
        k = int(bin_path.stem)
        n = bin_path.stat().st_size // 16
        logits = np.load(Path(directory) / f"{seq}_{k}.npy")
        assert logits.dtype == np.float32, f"{seq}_{k}.npy is {logits.dtype}"
        assert logits.shape == (n, 4), f"{seq}_{k}.npy is {logits.shape}, scan has {n} points"
        assert np.isfinite(logits).all()
        summary[str(k)] = {"rows": n, "spread": float(logits.std())}
    print(json.dumps(summary))


def main():
    command, *args = sys.argv[1:]
    if command == "check":
        check(*args)
    elif command == "copy":
        src, dst = map(Path, args)
        dst.mkdir(parents=True, exist_ok=True)
        for path in sorted(src.glob("*.npy")):
            np.save(dst / path.name, np.load(path))
    elif command == "short":
        path = Path(args[0])
        np.save(path, np.load(path)[:-1])
    elif command == "transpose":
        path = Path(args[0])
        np.save(path, np.ascontiguousarray(np.load(path).T))
    else:
        raise SystemExit(f"unknown command {command}")


if __name__ == "__main__":
    main()

"""`python -m rlx.datasets info FILE [FILE ...]`: sizes, episodes, return statistics and metadata
of rlx (.npz), D4RL (.hdf5) or Minari (`minari:<id>`) datasets. Exit 2 with a message on a bad file."""
from __future__ import annotations

import argparse
import json
import sys

from rlx.config import ConfigError

from . import describe, load


def _open(name: str):
    if name.startswith("minari:"):
        from .loaders import load_minari_dataset

        return load_minari_dataset(name[len("minari:"):])
    return load(name)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m rlx.datasets", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    info = sub.add_parser("info", help="print sizes, episodes, return statistics and metadata")
    info.add_argument("files", nargs="+", help="dataset files (.npz, .hdf5) or minari:<dataset id>")
    info.add_argument("--json", action="store_true", help="print one JSON object per file")
    args = p.parse_args(argv)
    try:
        for name in args.files:
            d = describe(*_open(name))
            if args.json:
                print(json.dumps({"file": name, **d}, default=str))
                continue
            print(f"{name}: {d['size']:,} rows, obs {d['obs_dim']}, actions {d['act_dim']}, {d['episodes']:,} complete "
                  f"episodes ({d['terminals']:,} terminal, {d['timeouts']:,} timeout)")
            if d["episodes"]:
                line = (f"  return mean {d['return_mean']:.2f} std {d['return_std']:.2f} "
                        f"[{d['return_min']:.2f}, {d['return_max']:.2f}]")
                if "normalized_score_mean" in d:
                    line += f"; normalised score {d['normalized_score_mean']:.1f}"
                print(line)
            for k, v in d["metadata"].items():
                print(f"  {k}: {v}")
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

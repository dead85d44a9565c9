"""rlx datasets from the command line; exit 2 with a message on bad input.

    python -m rlx.datasets generate --env brax/hopper --kind medium --out FILE [--size N] [--seed S]
    python -m rlx.datasets info FILE [FILE ...]     (rlx .npz, D4RL .hdf5, or minari:<dataset id>)
"""
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


def _generate(args) -> int:
    import os

    from . import save
    from .generate import cache_dir, generate

    if args.size is not None and args.size < 1:
        raise ConfigError(f"--size must be >= 1 (got {args.size})")
    out = args.out or os.path.join(cache_dir(), f"{args.env.replace('/', '_')}-{args.kind}-seed{args.seed}.npz")
    ds, meta = generate(args.env, args.kind, seed=args.seed, size=args.size, policies_path=args.policies)
    meta = save(out, ds, meta)
    d = describe(ds, meta)
    print(f"{out}: {d['size']:,} rows, {d['episodes']:,} episodes, behaviour return {meta['behaviour_return']:.1f}, "
          f"normalised {d.get('normalized_score_mean', float('nan')):.1f}, {meta['generation_s']} s, checksum {meta['checksum'][:12]}")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m rlx.datasets", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    gen = sub.add_parser("generate", help="make a D4RL-style dataset on brax from rlx's behaviour policies")
    gen.add_argument("--env", required=True, help="brax env with committed behaviour policies, e.g. brax/hopper")
    gen.add_argument("--kind", required=True, help="random, medium, medium-replay, expert or medium-expert")
    gen.add_argument("--out", help="output .npz (default: the dataset cache, $RLX_DATASETS_DIR or ~/.cache/rlx/datasets)")
    gen.add_argument("--size", type=int, help="rows (default: D4RL's size for the kind)")
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--policies", help="policy file (default: the committed one for --env)")
    info = sub.add_parser("info", help="print sizes, episodes, return statistics and metadata")
    info.add_argument("files", nargs="+", help="dataset files (.npz, .hdf5) or minari:<dataset id>")
    info.add_argument("--json", action="store_true", help="print one JSON object per file")
    args = p.parse_args(argv)
    try:
        if args.cmd == "generate":
            return _generate(args)
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

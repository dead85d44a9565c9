"""Lot-sizing instance files (`envs.make("lot-sizing/file", path=...)`, pdppo's `--instance-path`):
a missing file, malformed JSON, strings for numbers, a broken physical constraint or inconsistent
array lengths stop with a message naming the file and the field; on the command line with exit 2,
no traceback and nothing written, before anything compiles."""
import copy
import json
import os
import subprocess
import sys

import pytest

import rlx.envs as envs
from rlx.envs import lot_sizing

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(REPO, "..", "shared", "data", "lot_sizing")
GOOD = lot_sizing.generate_instance(4, 2, seed=3)


def _set(path, value):
    def edit(d):
        *head, last = path
        for k in head:
            d = d[k]
        d[last] = value
    return edit


def _delete(key):
    return lambda d: d.pop(key)


BROKEN = [  # (edit, the field the message must name, a piece of the reason)
    (_set(["max_inventory_level", 1], -5), "max_inventory_level[1]", ">= 1"),
    (_set(["max_inventory_level", 0], 0), "max_inventory_level[0]", ">= 1"),
    (_set(["holding_costs", 2], "0.01"), "holding_costs[2]", "number"),
    (_set(["lost_sales_costs", 0], -0.1), "lost_sales_costs[0]", ">= 0"),
    (_set(["setup_costs", 1, 3], -15), "setup_costs[1][3]", ">= 0"),
    (_set(["setup_loss", 0, 0], 1.5), "setup_loss[0][0]", "integer"),
    (_set(["machine_production", 0, 2], -3), "machine_production[0][2]", ">= 0"),
    (_set(["initial_inventory", 3], 101), "initial_inventory[3]", "max_inventory_level"),
    (_set(["initial_setup", 0], 5), "initial_setup[0]", "n_items"),
    (_set(["holding_costs"], [0.01] * 3), "holding_costs", "4 numbers"),
    (_set(["setup_costs"], [[15] * 4]), "setup_costs", "2 x 4"),
    (_set(["setup_loss", 1], [1] * 5), "setup_loss", "2 x 4"),
    (_set(["n_items"], "4"), "n_items", "integer"),
    (_set(["time_horizon"], 0), "time_horizon", ">= 1"),
    (_set(["holding_costs", 0], True), "holding_costs[0]", "number"),
    (_set(["demand_distribution"], {"name": "poisson", "lam": 8}), "demand_distribution", "binomial"),
    (_set(["demand_distribution", "p"], 1.4), "demand_distribution.p", "[0, 1]"),
    (_set(["demand_distribution", "n"], "20"), "demand_distribution.n", "integer"),
    (_delete("setup_loss"), "setup_loss", "lacks"),
]


@pytest.mark.parametrize("edit, field, reason", BROKEN, ids=[b[1] + ":" + b[2] for b in BROKEN])
def test_broken_instance_names_file_and_field(tmp_path, edit, field, reason):
    d = copy.deepcopy(GOOD)
    edit(d)
    path = tmp_path / "instance.json"
    path.write_text(json.dumps(d))
    with pytest.raises(ValueError) as e:
        envs.make("lot-sizing/file", path=str(path))
    msg = str(e.value)
    assert str(path) in msg and field in msg and reason in msg, msg
    with pytest.raises(ValueError, match="instance="):  # the same check for a dict
        envs.make("lot-sizing/file", instance=d)


def test_unreadable_files(tmp_path):
    with pytest.raises(ValueError, match="missing.json: no such file"):
        lot_sizing.load_instance(str(tmp_path / "missing.json"))
    bad = tmp_path / "bad.json"
    bad.write_text('{"time_horizon": 100, "n_items": ')
    with pytest.raises(ValueError, match=r"bad.json: not valid JSON \(.* line 1, column"):
        lot_sizing.load_instance(str(bad))
    listed = tmp_path / "list.json"
    listed.write_text("[1, 2]")
    with pytest.raises(ValueError, match="list.json: must be a JSON object"):
        lot_sizing.load_instance(str(listed))
    with pytest.raises(ValueError, match="is a directory"):
        lot_sizing.load_instance(str(tmp_path))


def test_good_instances_pass(tmp_path):
    lot_sizing.validate_instance(GOOD, "generated")
    for name in sorted(os.listdir(SHARED)) if os.path.isdir(SHARED) else []:
        if name.endswith(".json"):  # the paper's instance files, read in place
            env = envs.make("lot-sizing/file", path=os.path.join(SHARED, name))
            assert env.n_items == int(name.split("x")[0])


def _pdppo(args, out):
    proc = subprocess.run([sys.executable, os.path.join(REPO, "algorithms", "pdppo.py"), *args, "--out", str(out),
                           "--no-progress"], capture_output=True, text=True, timeout=600, cwd=REPO)
    return proc.returncode, proc.stdout + proc.stderr


@pytest.mark.parametrize("case", ["missing", "malformed", "string", "negative"])
def test_pdppo_cli_refuses_bad_instance_files(tmp_path, case):
    path = tmp_path / f"{case}.json"
    d = copy.deepcopy(GOOD)
    field = {"missing": "no such file", "malformed": "not valid JSON", "string": "holding_costs[1]",
             "negative": "max_inventory_level[0]"}[case]
    if case == "malformed":
        path.write_text(json.dumps(d)[:-20])
    elif case == "string":
        d["holding_costs"][1] = "0.01"
    elif case == "negative":
        d["max_inventory_level"][0] = -1
    if case in ("string", "negative"):
        path.write_text(json.dumps(d))
    rc, text = _pdppo(["--env", "lot-sizing/file", "--instance-path", str(path)], tmp_path / "run")
    assert rc == 2, text
    assert "Traceback" not in text, text
    assert "--instance-path" in text and str(path) in text and field in text, text
    assert not (tmp_path / "run" / "config.json").exists()


def test_instance_path_needs_a_lot_sizing_env(tmp_path):
    path = tmp_path / "i.json"
    path.write_text(json.dumps(GOOD))
    rc, text = _pdppo(["--env", "frozen-lake-pd", "--instance-path", str(path)], tmp_path / "run")
    assert rc == 2 and "Traceback" not in text and "--instance-path" in text and "lot-sizing" in text, text
